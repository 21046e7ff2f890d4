import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { buildLab, loadTopology, parseTopology } from '../src/index.js';
import { topologyProblems } from './support/topology-problems.js';

const problems = topologyProblems;

describe('topology files: "netns" entries', () => {
  it('accepts the example: two namespaces on a switch, no NICs', () => {
    const t = loadTopology(fileURLToPath(new URL('../examples/netns-iperf.json', import.meta.url)));
    expect(t.nics).toEqual([]);
    expect(t.netns?.map((n) => [n.name, n.port])).toEqual([
      ['vl-ns1', 'sw0'],
      ['vl-ns2', 'sw0'],
    ]);
    const lab = buildLab(t);
    expect(lab.netnsNames).toEqual(['vl-ns1', 'vl-ns2']);
  });

  it('a namespace links to a NIC or plugs into a switch, whose port can be tapped by its name', () => {
    const t = parseTopology({
      nics: [{ name: 'a' }],
      switches: [{ name: 'sw0' }],
      netns: [
        { name: 'n1', address: ['10.0.0.1/24', 'fd00::1/64'], port: 'a', mtu: 9000, ifname: 'veth9' },
        { name: 'n3', port: 'sw0', impairment: { lossPercent: 1 } },
      ],
      taps: [{ switch: 'sw0', file: 'x.pcap', port: 'n3' }],
    });
    expect(buildLab(t).netnsNames).toEqual(['n1', 'n3']);
    // Another namespace is no port: each one is attached by its own entry.
    expect(problems({ nics: [], netns: [{ name: 'n1', port: 'sw' }, { name: 'n2', port: 'n1' }], switches: [{ name: 'sw' }] })).toEqual(['netns[1].port: "n1" is not a switch, NIC or vhost-user port of this topology']);
  });

  it('names every bad field', () => {
    expect(problems({ nics: [{ name: 'a' }], netns: [{ name: 'a', port: 'nowhere', address: '10.0.0.1', mtu: 20, ifname: 'an-interface-name-too-long', colour: 1 }] })).toEqual([
      'netns[0].colour: unknown key (known: name, address, mtu, ifname, port, impairment)',
      'netns[0].port: "nowhere" is not a switch, NIC or vhost-user port of this topology',
      'netns[0].name: "a" is already the name of the NIC at nics[0]',
      'netns[0].address: "10.0.0.1" is not an address with its prefix length, like 10.0.0.1/24',
      'netns[0].mtu: must be an integer in [68, 65521], got 20',
      'netns[0].ifname: "an-interface-name-too-long" is not an interface name (1 to 15 of letters, digits, _ . -)',
    ]);
    expect(problems({ netns: [{ name: 'has:colon', port: 'x' }] })).toContain('netns[0].name: "has:colon" is not a name ip netns takes (letters, digits, _ . -)');
    expect(problems({ netns: [] })).toContain('nics: is required (a list)');
  });

  it('a NIC linked to a namespace cannot be linked again', () => {
    expect(problems({ nics: [{ name: 'a' }, { name: 'b' }], links: [{ a: 'a', b: 'b' }], netns: [{ name: 'n', port: 'a' }] })).toEqual(['netns[0].port: "a" is already attached at links[0] (one attachment per NIC)']);
  });
});
