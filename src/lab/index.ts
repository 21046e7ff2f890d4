export * from './placement.js';
export * from './pump.js';
export * from './lab.js';
export * from './lab-topology.js';
export * from './lab-traffic.js';
export * from './lab-report.js';
export { nicMemoryBytes, type NicMemoryPlan } from './lab-sizing.js';
