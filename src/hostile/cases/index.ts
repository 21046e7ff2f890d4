import type { HostileCase } from '../hostile-case.js';
import { CONTROL_CASES } from './control-cases.js';
import { NET_CASES } from './net-cases.js';
import { RING_CASES } from './ring-cases.js';
import { VSOCK_CASES } from './vsock-cases.js';

export { CONTROL_CASES, NET_CASES, RING_CASES, VSOCK_CASES };

/** Every case HostileDriver knows, by family: ring lies, virtio-net lies, virtio-vsock lies, control-plane lies. */
export const HOSTILE_CASES: readonly HostileCase[] = [...RING_CASES, ...NET_CASES, ...VSOCK_CASES, ...CONTROL_CASES];
