import { defineConfig } from 'tsup';

// The library (ESM + CJS + types: the main entry and the subpaths spec,
// ring, testing and vhost-user), the CLI, and one entry per worker file so
// workers load from dist/ without a TypeScript loader. comlink ships a UMD
// main that Node's ESM loader cannot name-import: bundle it (it is a
// devDependency for that reason). Declarations leave out members marked
// @internal; sourcemaps ship next to the code.
export default defineConfig([
  {
    entry: {
      index: 'src/index.ts',
      spec: 'src/spec/index.ts',
      ring: 'src/entries/ring.ts',
      testing: 'src/entries/testing.ts',
      'vhost-user': 'src/vhost-user/index.ts',
    },
    format: ['esm', 'cjs'],
    // Shared chunks in both formats: the main entry and a subpath share one
    // copy of every class (instanceof VirtioLabError holds across them).
    splitting: true,
    dts: { compilerOptions: { stripInternal: true } },
    sourcemap: true,
    shims: true,
    target: 'node20',
    noExternal: ['comlink'],
  },
  {
    entry: {
      cli: 'src/cli/main.ts',
      'workers/queue-worker': 'workers/queue-worker.ts',
      'workers/pump-guest': 'workers/pump-guest.ts',
      'workers/pump-queue-worker': 'workers/pump-queue-worker.ts',
      'workers/task-queue-worker': 'workers/task-queue-worker.ts',
      'workers/backend-worker': 'workers/backend-worker.ts',
      'workers/vhost-queue-worker': 'workers/vhost-queue-worker.ts',
      'workers/vhost-user-io': 'workers/vhost-user-io.ts',
      'workers/tap-worker': 'workers/tap-worker.ts',
      'workers/fuzz-worker': 'workers/fuzz-worker.ts',
    },
    format: ['esm'],
    target: 'node20',
    sourcemap: true,
    noExternal: ['comlink'],
  },
]);
