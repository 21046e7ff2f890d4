export * from './mac.js';
export * from './net-device.js';
export * from './net-driver.js';
export * from './tx-header.js';
export * from './rx-offloads.js';
export * from './offload/index.js';
export * from './ctrl/index.js';
export * from './net-pair-driver.js';
