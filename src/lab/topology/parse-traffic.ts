import { LAB_FRAME_MIN } from '../runtime/lab-traffic.js';
import type { TopologyCheck } from './topology-check.js';

/** The "traffic" list: flows between two of the lab's own NICs, frames no larger than either MTU allows. */
export function parseTraffic(c: TopologyCheck, list: unknown): void {
  c.array(list, 'traffic', false).forEach((v, i) => {
    const path = `traffic[${i}]`;
    const o = c.object(v, path);
    if (o === undefined) return;
    c.keys(o, ['from', 'to', 'frames', 'size', 'ratePps'], path);
    for (const key of ['from', 'to']) {
      const n = c.string(o, key, path, true);
      if (n !== undefined && !c.isKind(n, 'NIC')) c.bad(`${path}.${key}`, `"${n}" is not a NIC of this topology (NICs: ${[...c.mtus.keys()].join(', ')})`);
    }
    if (typeof o.from === 'string' && o.from === o.to) c.bad(`${path}.to`, `a flow needs two different NICs, got "${o.to}" twice`);
    c.number(o, 'frames', path, 1, 1e9, { integer: true, required: true });
    const max = Math.min(c.mtus.get(o.from as string) ?? 1500, c.mtus.get(o.to as string) ?? 1500) + 14;
    c.number(o, 'size', path, LAB_FRAME_MIN, max, { integer: true, required: true });
    c.number(o, 'ratePps', path, 0, 1e9, { exclusiveMin: true });
  });
}
