/**
 * What the stack keeps on each connection for its own structures, as
 * intrusive links (nothing allocated per packet or per queue entry): the
 * chain of the connection table's bucket, the send scheduler's ring and
 * done list, and which credit packets wait in the control queue. Only the
 * stack's modules (connection-table.ts, send-scheduler.ts) touch them.
 */
export class StackLinks<T> {
  /** @internal Key in the connection table. */
  tableKey = 0;
  /** @internal Next connection with the same key. */
  bucketNext: T | null = null;
  /** @internal In the scheduler's ring of connections with data to send. */
  inSendRing = false;
  /** @internal */
  sendNext: T | null = null;
  /** @internal Done chunks whose callbacks run after the pump. */
  doneNext: T | null = null;
  /** @internal */
  doneCb: ((err?: Error | null) => void) | null = null;
  /** @internal A CREDIT_UPDATE sits in the control queue. */
  creditUpdateQueued = false;
  /** @internal A CREDIT_REQUEST sits in the control queue. */
  creditRequestQueued = false;
}
