import type { SocketLinkOptions } from '../../backends/socket-link.js';
import { TopologyError, VirtioLabError } from '../../errors.js';
import { Lab } from '../runtime/lab.js';
import type { LabOptions } from '../runtime/lab-types.js';
import type { LabTopology, TopologyNetns, TopologyVxlan } from './topology-types.js';

/**
 * Build (not start) the lab a checked topology describes. What only the
 * lab can tell (a capture file that cannot be created shows at start()) is
 * thrown by the lab; anything the lab refuses here comes back as a
 * TopologyError naming the entry.
 */
export function buildLab(t: LabTopology, options: LabOptions = {}): Lab {
  const lab = new Lab(options);
  const at = (path: string, build: () => void): void => {
    try {
      build();
    } catch (e) {
      if (e instanceof TopologyError || !(e instanceof VirtioLabError)) throw e;
      throw new TopologyError([{ path, message: e.message }]);
    }
  };
  t.nics.forEach((n, i) => at(`nics[${i}]`, () => lab.nic(n.name, { mac: n.mac, mtu: n.mtu, queuePairs: n.queuePairs, queueSize: n.queueSize })));
  (t.switches ?? []).forEach((s, i) => at(`switches[${i}]`, () => lab.switch(s.name, s.ageingMs === undefined ? {} : { ageingMs: s.ageingMs })));
  (t.sockets ?? []).forEach((s, i) => {
    const { name, ...options } = s;
    at(`sockets[${i}]`, () => lab.socketLink(name, options as SocketLinkOptions));
  });
  (t.vhostUser ?? []).forEach((v, i) => {
    const { name, ...options } = v;
    at(`vhostUser[${i}]`, () => lab.vhostUser(name, options));
  });
  (t.links ?? []).forEach((l, i) => at(`links[${i}]`, () => lab.link(l.a, l.b, { impairment: l.impairment, capture: l.capture })));
  (t.ports ?? []).forEach((p, i) => at(`ports[${i}]`, () => lab.connect(p.nic, p.switch, { impairment: p.impairment })));
  (t.hosts ?? []).forEach((h, i) =>
    at(`hosts[${i}]`, () => {
      lab.nic(h.name);
      if (lab.switchNames.includes(h.port)) lab.connect(h.name, h.port);
      else lab.link(h.name, h.port);
    }),
  );
  buildVxlanUplinks(lab, t.vxlan ?? [], at);
  buildNetns(lab, t.netns ?? [], at);
  (t.taps ?? []).forEach((tap, i) => at(`taps[${i}]`, () => lab.tap(tap.switch, tap.file, tap.port === undefined ? {} : { port: tap.port })));
  return lab;
}

/** Add each VXLAN uplink and plug it into its switch (after the hosts, as parseTopology numbers the ports). */
function buildVxlanUplinks(lab: Lab, list: readonly TopologyVxlan[], at: (path: string, build: () => void) => void): void {
  list.forEach((v, i) =>
    at(`vxlan[${i}]`, () => {
      const { name, switch: sw, ...options } = v;
      lab.vxlan(name, options);
      lab.connect(name, sw);
    }),
  );
}

/** Add the topology's namespaces to the lab and plug each into its port (buildLab's part for "netns"). */
function buildNetns(lab: Lab, list: readonly TopologyNetns[], at: (path: string, build: () => void) => void): void {
  list.forEach((n, i) =>
    at(`netns[${i}]`, () => {
      lab.netns(n.name, { address: n.address, mtu: n.mtu, ifname: n.ifname });
      const impairment = n.impairment === undefined ? {} : { impairment: n.impairment };
      if (lab.switchNames.includes(n.port)) lab.connect(n.name, n.port, impairment);
      else lab.link(n.name, n.port, impairment);
    }),
  );
}
