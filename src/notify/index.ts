export * from './notify-area.js';
export * from './adaptive-wait.js';
