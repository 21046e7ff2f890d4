import { expect } from 'vitest';
import { TopologyError, parseTopology } from '../../src/index.js';

/** What parseTopology() says is wrong with `json`, as "field: message" lines (it must refuse it). */
export function topologyProblems(json: unknown): string[] {
  try {
    parseTopology(json);
  } catch (e) {
    expect(e).toBeInstanceOf(TopologyError);
    return (e as TopologyError).problems.map((p) => `${p.field}: ${p.message}`);
  }
  throw new Error('the topology was accepted');
}
