export * from './guest-memory.js';
export * from './arena.js';
export * from './allocator.js';
export type { ArenaMemory, SharedWasmMemory } from './wasm-copy.js';
