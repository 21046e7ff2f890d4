/** Device status bits (virtio 1.2 section 2.1). */
export const STATUS_ACKNOWLEDGE = 1;
export const STATUS_DRIVER = 2;
export const STATUS_DRIVER_OK = 4;
export const STATUS_FEATURES_OK = 8;
/** Set by the device when it hit an error it cannot recover from without a reset (2.1). */
export const STATUS_DEVICE_NEEDS_RESET = 64;
export const STATUS_FAILED = 128;

/** Device ids (section 5): only the ones this library models. */
export const DEVICE_ID_NET = 1;
export const DEVICE_ID_VSOCK = 19;
