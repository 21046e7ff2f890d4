import { existsSync } from 'node:fs';
import { VirtioLabError } from '../errors.js';

/**
 * The built worker entry `name` (workers are separate tsup entries so they
 * load from dist/ without a TypeScript loader). From the bundle it sits next
 * to this code; from the TypeScript sources (tests) it is in ../../dist.
 */
export function workerFile(name: string): URL {
  const candidates = [new URL(`./workers/${name}.js`, import.meta.url), new URL(`../../dist/workers/${name}.js`, import.meta.url)];
  for (const url of candidates) if (existsSync(url)) return url;
  throw new VirtioLabError('WORKER_NOT_BUILT', `worker ${name}.js not found next to the library or in dist/: run \`npm run build\``);
}
