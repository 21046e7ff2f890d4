export * from './config-space.js';
export * from './device-model.js';
export * from './virtio-device.js';
export * from './pci-common-config.js';
export * from './pci-driver.js';
