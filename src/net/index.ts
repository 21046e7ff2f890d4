export * from './mac.js';
export * from './net-device.js';
export * from './net-driver.js';
