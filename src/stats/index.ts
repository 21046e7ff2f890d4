export * from './queue-stats.js';
