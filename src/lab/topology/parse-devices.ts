import { THREAD_MAPPING_NAMES } from '../../transport/thread-mapping.js';
import { TOPOLOGY_MAX_QUEUE_PAIRS, TOPOLOGY_MAX_RING_THREADS } from './topology-types.js';
import { type Json, type TopologyCheck, describe } from './topology-check.js';

// The sections that name the lab's devices: "nics", "switches", "sockets",
// "vhostUser". They come first: the other sections refer to these names.

/** The "nics" list (required unless "netns" lists a namespace). */
export function parseNics(c: TopologyCheck, list: unknown, hasNetns: boolean): void {
  const nics = c.array(list, 'nics', !hasNetns);
  if (Array.isArray(list) && nics.length === 0 && !hasNetns) c.bad('nics', 'must list at least one NIC, got an empty list');
  nics.forEach((v, i) => {
    const path = `nics[${i}]`;
    const o = c.object(v, path);
    if (o === undefined) return;
    c.keys(o, ['name', 'mac', 'mtu', 'queuePairs', 'queueSize'], path);
    c.name(o, path, 'NIC');
    c.mac(o, path);
    const mtu = c.number(o, 'mtu', path, 68, 65535, { integer: true });
    if (typeof o.name === 'string') c.mtus.set(o.name, mtu ?? 1500);
    c.number(o, 'queuePairs', path, 1, TOPOLOGY_MAX_QUEUE_PAIRS, { integer: true });
    const qs = c.number(o, 'queueSize', path, 2, 32768, { integer: true });
    if (qs !== undefined && (qs & (qs - 1)) !== 0) c.bad(`${path}.queueSize`, `${qs} is not a power of two`);
  });
}

/** The "switches" list. */
export function parseSwitches(c: TopologyCheck, list: unknown): void {
  c.array(list, 'switches', false).forEach((v, i) => {
    const path = `switches[${i}]`;
    const o = c.object(v, path);
    if (o === undefined) return;
    c.keys(o, ['name', 'ageingMs'], path);
    c.name(o, path, 'switch');
    c.number(o, 'ageingMs', path, 0, 1e9, { exclusiveMin: true });
  });
}

/** The "vhostUser" list: LabVhostUserOptions plus a name. */
export function parseVhostUser(c: TopologyCheck, list: unknown): void {
  c.array(list, 'vhostUser', false).forEach((v, i) => {
    const path = `vhostUser[${i}]`;
    const o = c.object(v, path);
    if (o === undefined) return;
    c.keys(o, ['name', 'path', 'mac', 'mtu', 'queuePairs', 'allowUnsealedMemory', 'threads', 'spinUs'], path);
    c.name(o, path, 'vhost-user port');
    c.boolean(o, 'allowUnsealedMemory', path);
    c.string(o, 'path', path, true);
    c.mac(o, path);
    c.number(o, 'mtu', path, 68, 65535, { integer: true });
    c.number(o, 'queuePairs', path, 1, TOPOLOGY_MAX_QUEUE_PAIRS, { integer: true });
    threadMapping(c, o.threads, `${path}.threads`);
    c.number(o, 'spinUs', path, 0, 1_000_000);
  });
}

/** A ThreadMapping as JSON: one of the named mappings or { "workers": N } (a pool cannot be written in a file). */
function threadMapping(c: TopologyCheck, v: unknown, path: string): void {
  if (v === undefined || (typeof v === 'string' && (THREAD_MAPPING_NAMES as readonly string[]).includes(v))) return;
  if (typeof v === 'object' && v !== null && !Array.isArray(v) && 'workers' in v) {
    const o = v as Json;
    c.keys(o, ['workers'], path);
    c.number(o, 'workers', path, 1, TOPOLOGY_MAX_RING_THREADS, { integer: true });
    return;
  }
  c.bad(path, `must be ${THREAD_MAPPING_NAMES.map((n) => `"${n}"`).join(', ')} or { "workers": N }, got ${describe(v)}`);
}

/** The "sockets" list: SocketLinkOptions (stream or dgram) plus a name. */
export function parseSockets(c: TopologyCheck, list: unknown): void {
  c.array(list, 'sockets', false).forEach((v, i) => {
    const path = `sockets[${i}]`;
    const o = c.object(v, path);
    if (o === undefined) return;
    c.name(o, path, 'socket link');
    c.number(o, 'mtu', path, 68, 65535, { integer: true });
    if (o.transport === 'stream') {
      c.keys(o, ['name', 'transport', 'role', 'path', 'host', 'port', 'mtu'], path);
      if (o.role !== 'server' && o.role !== 'client') c.bad(`${path}.role`, `must be "server" or "client", got ${describe(o.role)}`);
      if (o.path !== undefined) {
        c.string(o, 'path', path, true);
        if (o.port !== undefined || o.host !== undefined) c.bad(path, `give a Unix socket "path" or a TCP "host"/"port", not both (got path ${describe(o.path)}, host ${describe(o.host)}, port ${describe(o.port)})`);
      } else {
        c.string(o, 'host', path, false);
        c.number(o, 'port', path, 0, 65535, { integer: true, required: true });
      }
    } else if (o.transport === 'dgram') {
      c.keys(o, ['name', 'transport', 'local', 'remote', 'mtu', 'recvBufferSize', 'sendBufferSize'], path);
      for (const key of ['recvBufferSize', 'sendBufferSize']) c.number(o, key, path, 1, 0x7fffffff, { integer: true });
      for (const key of ['local', 'remote']) {
        if (o[key] === undefined && key === 'local') continue;
        const a = c.object(o[key], `${path}.${key}`);
        if (a === undefined) continue;
        c.keys(a, ['host', 'port'], `${path}.${key}`);
        c.string(a, 'host', `${path}.${key}`, false);
        c.number(a, 'port', `${path}.${key}`, key === 'remote' ? 1 : 0, 65535, { integer: true, required: key === 'remote' });
      }
    } else {
      c.bad(`${path}.transport`, `must be "stream" or "dgram", got ${describe(o.transport)}`);
    }
  });
}
