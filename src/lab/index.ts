export * from './placement.js';
export * from './pump.js';
