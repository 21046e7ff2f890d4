import { isInterfaceName, isNetnsName } from '../../backends/netns.js';
import { type VxlanUplinkOptions, checkVxlanOptions } from '../../backends/vxlan-options.js';
import { parseHostAddress } from '../hosts/ipv4-address.js';
import { isAddressWithPrefix } from '../runtime/lab-entry-checks.js';
import { switchOf } from './parse-wiring.js';
import { type Json, type TopologyCheck, describe } from './topology-check.js';

// The sections that plug something of their own into a switch (or link it
// to a NIC): "hosts", "vxlan" and "netns", in that order (the order their
// switch ports are numbered in).

/** The "hosts" list: the lab's IPv4 host, with TFTP and DHCP. */
export function parseHosts(c: TopologyCheck, list: unknown): void {
  c.array(list, 'hosts', false).forEach((v, i) => {
    const path = `hosts[${i}]`;
    const o = c.object(v, path);
    if (o === undefined) return;
    c.keys(o, ['name', 'address', 'port', 'tftpRoot', 'dhcp'], path);
    c.name(o, path, 'IP host');
    const address = c.string(o, 'address', path, true);
    if (address !== undefined && parseHostAddress(address) === undefined) c.bad(`${path}.address`, `"${address}" is not an IPv4 address with an optional prefix length in [1, 30], like 10.0.2.2/24`);
    c.plugOrLink(o, path, o.name);
    c.string(o, 'tftpRoot', path, false);
    if (o.dhcp !== undefined && o.dhcp !== true) parseDhcp(c, o.dhcp, `${path}.dhcp`);
  });
}

/** A host's "dhcp" options (DhcpServerOptions without `host`). */
function parseDhcp(c: TopologyCheck, v: unknown, path: string): void {
  const d = c.object(v, path);
  if (d === undefined) return;
  c.keys(d, ['poolStart', 'poolSize', 'leaseSeconds', 'router', 'nextServer'], path);
  for (const key of ['poolStart', 'router', 'nextServer']) {
    const a = c.string(d, key, path, key === 'poolStart');
    if (a !== undefined && parseHostAddress(a) === undefined) c.bad(`${path}.${key}`, `"${a}" is not an IPv4 address`);
  }
  c.number(d, 'poolSize', path, 1, 65534, { integer: true });
  c.number(d, 'leaseSeconds', path, 60, 0x7fffffff, { integer: true });
}

/** The "netns" list (after "hosts", whose NICs it cannot take). */
export function parseNetns(c: TopologyCheck, list: unknown): void {
  c.array(list, 'netns', false).forEach((v, i) => {
    const path = `netns[${i}]`;
    const o = c.object(v, path);
    if (o === undefined) return;
    c.keys(o, ['name', 'address', 'mtu', 'ifname', 'port', 'impairment'], path);
    c.plugOrLink(o, path, o.name);
    c.name(o, path, 'network namespace');
    if (typeof o.name === 'string' && !isNetnsName(o.name)) c.bad(`${path}.name`, `"${o.name}" is not a name ip netns takes (letters, digits, _ . -)`);
    const addresses = typeof o.address === 'string' ? [o.address] : Array.isArray(o.address) ? o.address : o.address === undefined ? [] : [o.address];
    for (const a of addresses) {
      if (!isAddressWithPrefix(a)) c.bad(`${path}.address`, `${describe(a)} is not an address with its prefix length, like 10.0.0.1/24`);
    }
    c.number(o, 'mtu', path, 68, 65521, { integer: true });
    const ifname = c.string(o, 'ifname', path, false);
    if (ifname !== undefined && !isInterfaceName(ifname)) c.bad(`${path}.ifname`, `"${ifname}" is not an interface name (1 to 15 of letters, digits, _ . -)`);
    if (o.impairment !== undefined) c.impairment(o.impairment, `${path}.impairment`);
  });
}

const VXLAN_KEYS = ['name', 'switch', 'vni', 'local', 'port', 'remotes', 'learning', 'restrictSources', 'ageingSeconds', 'fdbSize', 'mtu'] as const;

/**
 * The "vxlan" list: shape and switch here, each option by the uplink's own
 * check (the same messages as Lab.vxlan()), one key at a time so that the
 * problem's path names the key.
 */
export function parseVxlan(c: TopologyCheck, list: unknown): void {
  c.array(list, 'vxlan', false).forEach((v, i) => {
    const path = `vxlan[${i}]`;
    const o = c.object(v, path);
    if (o === undefined) return;
    c.keys(o, VXLAN_KEYS, path);
    c.name(o, path, 'VXLAN uplink');
    const sw = switchOf(c, o, path);
    if (sw !== undefined && typeof o.name === 'string') c.plug(sw, o.name);
    if (o.vni === undefined) c.bad(`${path}.vni`, 'is required');
    if (o.remotes !== undefined && !Array.isArray(o.remotes)) c.bad(`${path}.remotes`, `must be a list, got ${describe(o.remotes)}`);
    else for (const key of VXLAN_KEYS.slice(2)) vxlanOption(c, o, key, path);
  });
}

/** Check option `key` of a VXLAN uplink alone (remotes with the uplink's port, their default). */
function vxlanOption(c: TopologyCheck, o: Json, key: (typeof VXLAN_KEYS)[number], path: string): void {
  if (o[key] === undefined) return;
  const port = key === 'remotes' && Number.isInteger(o.port) && (o.port as number) >= 0 && (o.port as number) <= 65535 ? { port: o.port } : {};
  try {
    checkVxlanOptions({ vni: 0, ...port, [key]: o[key] } as unknown as VxlanUplinkOptions);
  } catch (e) {
    c.bad(`${path}.${key}`, (e as Error).message);
  }
}
