export * from './port-channel.js';
export * from './link.js';
