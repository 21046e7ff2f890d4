/**
 * parseTopology checks each section on its own: a bad value in any section
 * is one TopologyError (an InvalidArgumentError) whose `path` is the JSON
 * path of the bad field and whose message names that path and the value seen.
 */
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError, TopologyError, loadTopology, parseTopology } from '../src/index.js';
import { topologyProblems } from './support/topology-problems.js';

const NIC = { name: 'a' };
const TWO_NICS = [NIC, { name: 'b' }];
const SWITCH = [{ name: 'sw' }];

/** One bad value per section: the topology, the path it must name, the message there (with the value seen). */
const BAD_VALUE_PER_SECTION: [section: string, json: Record<string, unknown>, path: string, message: string][] = [
  ['description', { nics: [NIC], description: 42 }, 'description', 'must be a string, got 42'],
  ['nics', { nics: [NIC, { name: 'b', mtu: 67 }] }, 'nics[1].mtu', 'must be an integer in [68, 65535], got 67'],
  ['switches', { nics: [NIC], switches: [{ name: 'sw', ageingMs: 'long' }] }, 'switches[0].ageingMs', 'must be a number in (0, 1000000000], got "long"'],
  ['sockets', { nics: [NIC], sockets: [{ name: 's', transport: 'dgram', remote: { port: 70000 } }] }, 'sockets[0].remote.port', 'must be an integer in [1, 65535], got 70000'],
  ['vhostUser', { nics: [NIC], vhostUser: [{ name: 'vm', path: '/tmp/vm.sock', allowUnsealedMemory: 'yes' }] }, 'vhostUser[0].allowUnsealedMemory', 'must be true or false, got "yes"'],
  [
    'links',
    { nics: [NIC, { name: 'b' }, { name: 'c' }, { name: 'd' }, { name: 'e' }, { name: 'f' }], links: [{ a: 'a', b: 'b' }, { a: 'c', b: 'd' }, { a: 'e', b: 'f', impairment: { bToA: { lossPercent: 101 } } }] },
    'links[2].impairment.bToA.lossPercent',
    'must be a number in [0, 100], got 101',
  ],
  ['ports', { nics: [NIC], switches: SWITCH, ports: [{ nic: 'a', switch: 'sw', impairment: { queueBytes: 100 } }] }, 'ports[0].impairment.queueBytes', 'must be an integer in [4096, 1073741824], got 100'],
  ['taps', { nics: [NIC], switches: SWITCH, ports: [{ nic: 'a', switch: 'sw' }], taps: [{ switch: 'sw', file: 'x.pcap', port: 3 }] }, 'taps[0].port', 'must be an integer in [0, 0], got 3'],
  ['hosts', { nics: [NIC], switches: SWITCH, hosts: [{ name: 'gw', address: '10.0.2.2', port: 'sw', dhcp: { poolStart: '10.0.2.15', poolSize: 0 } }] }, 'hosts[0].dhcp.poolSize', 'must be an integer in [1, 65534], got 0'],
  ['netns', { switches: SWITCH, netns: [{ name: 'ns1', port: 'sw', address: 5 }] }, 'netns[0].address', '5 is not an address with its prefix length, like 10.0.0.1/24'],
  ['traffic', { nics: TWO_NICS, links: [{ a: 'a', b: 'b' }], traffic: [{ from: 'a', to: 'b', frames: 1, size: 64, ratePps: -5 }] }, 'traffic[0].ratePps', 'must be a number in (0, 1000000000], got -5'],
  ['vxlan', { nics: [NIC], switches: SWITCH, vxlan: [{ name: 'v', switch: 'sw', vni: 1, fdbSize: 0 }] }, 'vxlan[0].fdbSize', 'VXLAN fdbSize 0 must be an integer in [1, 2^20]'],
];

describe('parseTopology: a bad value in each section names its JSON path and the value seen', () => {
  it.each(BAD_VALUE_PER_SECTION)('%s', (_section, json, path, message) => {
    let error: unknown;
    try {
      parseTopology(json);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(TopologyError);
    expect(error).toBeInstanceOf(InvalidArgumentError);
    const e = error as TopologyError;
    expect(e.code).toBe('INVALID_TOPOLOGY');
    expect(e.problems).toEqual([{ path, message }]);
    expect(e.path).toBe(path);
    expect(e.message).toBe(`${path}: ${message}`);
  });

  it('the same topology without the bad value is accepted (each case fails only for its one field)', () => {
    const fixed: Record<string, (json: Record<string, unknown>) => void> = {
      description: (j) => (j.description = 'ok'),
      nics: (j) => ((j.nics as { mtu?: number }[])[1].mtu = 68),
      switches: (j) => ((j.switches as { ageingMs?: unknown }[])[0].ageingMs = 1000),
      sockets: (j) => ((j.sockets as { remote: { port: number } }[])[0].remote.port = 65535),
      vhostUser: (j) => ((j.vhostUser as { allowUnsealedMemory?: unknown }[])[0].allowUnsealedMemory = true),
      links: (j) => ((j.links as { impairment?: { bToA: { lossPercent: number } } }[])[2].impairment!.bToA.lossPercent = 100),
      ports: (j) => ((j.ports as { impairment: { queueBytes: number } }[])[0].impairment.queueBytes = 4096),
      taps: (j) => ((j.taps as { port: number }[])[0].port = 0),
      hosts: (j) => ((j.hosts as { dhcp: { poolSize: number } }[])[0].dhcp.poolSize = 1),
      netns: (j) => ((j.netns as { address: unknown }[])[0].address = '10.0.0.1/24'),
      traffic: (j) => ((j.traffic as { ratePps: number }[])[0].ratePps = 5),
      vxlan: (j) => ((j.vxlan as { fdbSize: number }[])[0].fdbSize = 1),
    };
    for (const [section, json] of BAD_VALUE_PER_SECTION) {
      const copy = structuredClone(json);
      fixed[section](copy);
      expect([section, topologyProblems(copy)]).toEqual([section, []]);
    }
  });

  it('each VXLAN option is checked on its own, under its own key', () => {
    expect(topologyProblems({ nics: [NIC], switches: SWITCH, vxlan: [{ name: 'v', switch: 'sw', vni: 1, port: 70000, remotes: ['10.0.0.300'], learning: 'no' }] })).toEqual([
      'vxlan[0].port: VXLAN port 70000 must be an integer in [0, 65535] (0: any free port)',
      'vxlan[0].remotes: VXLAN remote "10.0.0.300" is not an IPv4 address with an optional port, like "10.0.0.2" or "10.0.0.2:4789"',
      'vxlan[0].learning: VXLAN learning no must be true or false',
    ]);
    // A remote listed twice is a duplicate once the uplink's port is its default.
    expect(topologyProblems({ nics: [NIC], switches: SWITCH, vxlan: [{ name: 'v', switch: 'sw', vni: 1, port: 4790, remotes: ['10.0.0.2', '10.0.0.2:4790'] }] })).toEqual([
      'vxlan[0].remotes: VXLAN remote 10.0.0.2:4790 is listed twice',
    ]);
  });

  it("a vhost-user port's ring threads: threads (a named mapping or { workers: N }) and spinUs are checked under their own paths", () => {
    const port = (extra: Record<string, unknown>) => ({ nics: [NIC], vhostUser: [{ name: 'vm', path: '/tmp/vm.sock', ...extra }] });
    let error: unknown;
    try {
      parseTopology(port({ threads: 'link' }));
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(TopologyError);
    expect((error as TopologyError).path).toBe('vhostUser[0].threads');
    expect((error as TopologyError).message).toBe('vhostUser[0].threads: must be "auto", "per-queue", "per-pair", "per-device" or { "workers": N }, got "link"');
    expect(topologyProblems(port({ threads: 2 }))).toEqual(['vhostUser[0].threads: must be "auto", "per-queue", "per-pair", "per-device" or { "workers": N }, got 2']);
    expect(topologyProblems(port({ threads: { workers: 0 } }))).toEqual(['vhostUser[0].threads.workers: must be an integer in [1, 32], got 0']);
    expect(topologyProblems(port({ threads: { workers: 2, pool: 1 } }))).toEqual(['vhostUser[0].threads.pool: unknown key (known: workers)']);
    expect(topologyProblems(port({ spinUs: -1 }))).toEqual(['vhostUser[0].spinUs: must be a number in [0, 1000000], got -1']);
    for (const threads of ['auto', 'per-queue', 'per-pair', 'per-device', { workers: 32 }]) expect([threads, topologyProblems(port({ threads, spinUs: 0 }))]).toEqual([threads, []]);
  });

  it('a topology that is no object is a TopologyError at (topology); a file that is not there or not JSON one at (file)', () => {
    expect(() => parseTopology(null)).toThrow(new TopologyError([{ path: '(topology)', message: 'must be an object, got null' }]));
    const missing = join(tmpdir(), `vl-no-such-topology-${process.pid}.json`);
    expect(() => loadTopology(missing)).toThrow(expect.objectContaining({ path: '(file)', message: expect.stringContaining(`cannot read ${missing}`) }));
    const notJson = fileURLToPath(import.meta.url);
    expect(() => loadTopology(notJson)).toThrow(expect.objectContaining({ path: '(file)', message: expect.stringContaining(`${notJson} is not JSON`) }));
  });
});
