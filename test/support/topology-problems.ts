import { expect } from 'vitest';
import { TopologyError, parseTopology } from '../../src/index.js';

/** What parseTopology() says is wrong with `json`, as "path: message" lines ([] when it accepts it). */
export function topologyProblems(json: unknown): string[] {
  try {
    parseTopology(json);
    return [];
  } catch (e) {
    expect(e).toBeInstanceOf(TopologyError);
    return (e as TopologyError).problems.map((p) => `${p.path}: ${p.message}`);
  }
}
