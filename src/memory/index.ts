export * from './guest-memory.js';
export * from './arena.js';
export * from './allocator.js';
