/**
 * struct virtio_pci_common_cfg offsets (virtio 1.2 section 4.1.4.3). The
 * register view in transport/pci-common-config.ts decodes accesses by these.
 */
export const PCI_DEVICE_FEATURE_SELECT = 0; // le32
export const PCI_DEVICE_FEATURE = 4; // le32, read-only
export const PCI_DRIVER_FEATURE_SELECT = 8; // le32
export const PCI_DRIVER_FEATURE = 12; // le32
export const PCI_CONFIG_MSIX_VECTOR = 16; // le16
export const PCI_NUM_QUEUES = 18; // le16, read-only
export const PCI_DEVICE_STATUS = 20; // u8
export const PCI_CONFIG_GENERATION = 21; // u8, read-only
export const PCI_QUEUE_SELECT = 22; // le16
export const PCI_QUEUE_SIZE = 24; // le16
export const PCI_QUEUE_MSIX_VECTOR = 26; // le16
export const PCI_QUEUE_ENABLE = 28; // le16
export const PCI_QUEUE_NOTIFY_OFF = 30; // le16, read-only
export const PCI_QUEUE_DESC = 32; // le64
export const PCI_QUEUE_DRIVER = 40; // le64
export const PCI_QUEUE_DEVICE = 48; // le64
export const PCI_QUEUE_NOTIFY_DATA = 56; // le16, read-only
export const PCI_QUEUE_RESET = 58; // le16
export const PCI_COMMON_CFG_SIZE = 60;
/** "No vector" value for config_msix_vector / queue_msix_vector (4.1.5.1.2). */
export const PCI_NO_VECTOR = 0xffff;
