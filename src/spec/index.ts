export * from './status.js';
export * from './features.js';
export * from './ring.js';
export * from './net.js';
export * from './vsock.js';
export * from './pci.js';
