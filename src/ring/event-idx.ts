/**
 * The event-index test (virtio 1.2 section 2.7.10 / Linux vring_need_event):
 * the other side asked to be notified once the index passes `event`; having
 * moved the index from `old` to `next`, notify iff `event` lies in
 * [old, next). All arithmetic is modulo 2^16.
 */
export function needEvent(event: number, next: number, old: number): boolean {
  return ((next - event - 1) & 0xffff) < ((next - old) & 0xffff);
}
