export * from './chain.js';
export * from './chain-io.js';
export * from './event-idx.js';
export * from './queue-state.js';
export * from './split-layout.js';
export * from './split-device.js';
export * from './split-driver.js';
