import { readFileSync } from 'node:fs';
import { TopologyError } from '../../errors.js';
import { parseNics, parseSockets, parseSwitches, parseVhostUser } from './parse-devices.js';
import { parseHosts, parseNetns, parseVxlan } from './parse-hosts.js';
import { parseTraffic } from './parse-traffic.js';
import { parseLinks, parsePorts, parseTaps } from './parse-wiring.js';
import { TopologyCheck, describe } from './topology-check.js';
import type { LabTopology } from './topology-types.js';

const SECTIONS = ['description', 'nics', 'switches', 'sockets', 'vhostUser', 'links', 'ports', 'taps', 'hosts', 'netns', 'traffic', 'vxlan'] as const;

/**
 * Check a parsed topology and return it typed. Every problem is collected
 * (shape, ranges, names that do not exist, an end attached twice, a frame
 * size larger than an MTU) and thrown as one TopologyError, each problem
 * with its JSON path (`links[2].impairment.lossPercent`) and the value seen.
 */
export function parseTopology(json: unknown): LabTopology {
  const c = new TopologyCheck();
  const root = c.object(json, '(topology)');
  if (root === undefined) throw new TopologyError(c.problems);
  c.keys(root, SECTIONS, '(topology)');
  if (root.description !== undefined && typeof root.description !== 'string') c.bad('description', `must be a string, got ${describe(root.description)}`);
  // Sections that name things first, then those that refer to the names;
  // switch ports are numbered in this order ("ports", hosts, VXLAN, netns, then links).
  parseNics(c, root.nics, Array.isArray(root.netns) && root.netns.length !== 0);
  parseSwitches(c, root.switches);
  parseSockets(c, root.sockets);
  parseVhostUser(c, root.vhostUser);
  parseLinks(c, root.links);
  parsePorts(c, root.ports);
  parseHosts(c, root.hosts);
  parseVxlan(c, root.vxlan);
  parseNetns(c, root.netns);
  parseTaps(c, root.taps);
  parseTraffic(c, root.traffic);
  if (c.problems.length !== 0) throw new TopologyError(c.problems);
  return { ...root, nics: root.nics ?? [] } as unknown as LabTopology;
}

/** Read and check a topology file; a file that cannot be read or parsed is a TopologyError too (path `(file)`). */
export function loadTopology(path: string): LabTopology {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new TopologyError([{ path: '(file)', message: `cannot read ${path}: ${(e as Error).message}` }]);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new TopologyError([{ path: '(file)', message: `${path} is not JSON: ${(e as Error).message}` }]);
  }
  return parseTopology(json);
}
