export * from './errors.js';
export * from './rx-filter.js';
export * from './net-ctrl-queue.js';
export * from './net-ctrl-driver.js';
