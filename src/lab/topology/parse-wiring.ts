import type { Json, TopologyCheck } from './topology-check.js';

// The sections that wire the devices: "links" (cables between two NICs or
// two switches), "ports" (a NIC in a switch) and "taps" (captures on a
// switch port, checked last: they name any port of a switch).

/** The "links" list; records each capture file and each switch's link ports. */
export function parseLinks(c: TopologyCheck, list: unknown): void {
  c.array(list, 'links', false).forEach((v, i) => {
    const path = `links[${i}]`;
    const o = c.object(v, path);
    if (o === undefined) return;
    c.keys(o, ['a', 'b', 'impairment', 'capture'], path);
    const a = c.endpoint(o, 'a', path, true);
    if (o.a !== undefined && o.a === o.b) c.bad(`${path}.b`, `a link needs two different ends, got ${JSON.stringify(o.b)} twice`);
    else if (!linkEnds(c, path, a, c.endpoint(o, 'b', path, true))) return;
    if (o.impairment !== undefined) linkImpairment(c, o.impairment, `${path}.impairment`);
    const capture = c.string(o, 'capture', path, false);
    if (capture !== undefined) c.files.set(capture, `${path}.capture`);
  });
}

/** Check the two ends of a link; false when one is a switch and the other not. */
function linkEnds(c: TopologyCheck, path: string, a: string | undefined, b: string | undefined): boolean {
  if (a === undefined || b === undefined) return true;
  if (c.isKind(a, 'socket link') && c.isKind(b, 'socket link')) c.bad(path, `both ends are socket links ("${a}", "${b}"); connect at least one NIC`);
  // A link joins two switches or two NICs; a NIC goes into a switch by "ports".
  if (c.isKind(a, 'switch') !== c.isKind(b, 'switch')) {
    const [key, sw] = c.isKind(a, 'switch') ? ['a', a] : ['b', b];
    c.bad(`${path}.${key}`, `"${sw}" is a switch; plug NICs into switches with "ports"`);
    return false;
  }
  if (c.isKind(a, 'switch')) {
    c.uplink(a, b);
    c.uplink(b, a);
  }
  return true;
}

/** One set of ImpairmentOptions for both directions, or `{ aToB, bToA }`. */
function linkImpairment(c: TopologyCheck, v: unknown, path: string): void {
  const imp = c.object(v, path);
  if (imp !== undefined && ('aToB' in imp || 'bToA' in imp)) {
    c.keys(imp, ['aToB', 'bToA'], path);
    if (imp.aToB !== undefined) c.impairment(imp.aToB, `${path}.aToB`);
    if (imp.bToA !== undefined) c.impairment(imp.bToA, `${path}.bToA`);
  } else if (imp !== undefined) {
    c.impairment(imp, path);
  }
}

/** The "ports" list: a NIC (or socket link, vhost-user port) into a switch. */
export function parsePorts(c: TopologyCheck, list: unknown): void {
  c.array(list, 'ports', false).forEach((v, i) => {
    const path = `ports[${i}]`;
    const o = c.object(v, path);
    if (o === undefined) return;
    c.keys(o, ['nic', 'switch', 'impairment'], path);
    const sw = switchOf(c, o, path);
    const nic = c.endpoint(o, 'nic', path);
    if (sw !== undefined && nic !== undefined) c.plug(sw, nic);
    if (o.impairment !== undefined) c.impairment(o.impairment, `${path}.impairment`);
  });
}

/** The "taps" list: a capture file per switch (or one of its ports, by name or number). */
export function parseTaps(c: TopologyCheck, list: unknown): void {
  c.array(list, 'taps', false).forEach((v, i) => {
    const path = `taps[${i}]`;
    const o = c.object(v, path);
    if (o === undefined) return;
    c.keys(o, ['switch', 'file', 'port'], path);
    const sw = c.string(o, 'switch', path, true);
    if (sw !== undefined && !c.isKind(sw, 'switch')) c.bad(`${path}.switch`, `"${sw}" is not a switch of this topology`);
    const file = c.string(o, 'file', path, true);
    if (file !== undefined) {
      if (c.files.has(file)) c.bad(`${path}.file`, `${file} is already written by ${c.files.get(file)}`);
      c.files.set(file, path);
    }
    const onSwitch = sw === undefined ? [] : c.switchPorts(sw);
    if (typeof o.port === 'string') {
      if (!onSwitch.includes(o.port)) c.bad(`${path}.port`, `"${o.port}" is not connected to switch "${sw}" (its ports: ${onSwitch.join(', ') || 'none'})`);
    } else if (o.port !== undefined) {
      c.number(o, 'port', path, 0, Math.max(0, onSwitch.length - 1), { integer: true });
      if (onSwitch.length === 0) c.bad(`${path}.port`, `switch "${sw}" has no ports`);
    }
  });
}

/** The entry's "switch": a switch of the topology, or undefined (and a problem). */
export function switchOf(c: TopologyCheck, o: Json, path: string): string | undefined {
  const sw = c.string(o, 'switch', path, true);
  if (sw === undefined || c.isKind(sw, 'switch')) return sw;
  c.bad(`${path}.switch`, `"${sw}" is not a switch of this topology`);
  return undefined;
}
