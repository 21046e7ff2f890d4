import { VSOCK_PORT_ANY } from '../stack/limits.js';

// The one line a host program sends the muxer before its bytes flow raw:
// `CONNECT <port>\n`, and nothing else (Firecracker's hybrid vsock).

/** Why a CONNECT line was refused. */
export type ConnectLineError =
  /** No `\n` within maxLineBytes. */
  | 'line-too-long'
  /** The line does not start with `CONNECT ` (case-sensitive). */
  | 'not-connect'
  /** The port is missing, not decimal digits, above 4294967295, or VMADDR_PORT_ANY. */
  | 'bad-port'
  /** Anything after the port: spaces, a `\r`, more words. */
  | 'trailing-garbage'
  /** The client shut down its sending side before a full line. */
  | 'truncated';

/** Every {@link ConnectLineError}, in the order of stats.badLines. */
export const CONNECT_LINE_ERRORS: readonly ConnectLineError[] = ['line-too-long', 'not-connect', 'bad-port', 'trailing-garbage', 'truncated'];

/** Result of {@link parseConnectLine}. */
export type ConnectLineResult = { ok: true; port: number } | { ok: false; reason: ConnectLineError; message: string };

const SP = 0x20;
const TAB = 0x09;
const CR = 0x0d;
const PREFIX = 'CONNECT';

/**
 * Parse one CONNECT line, without its `\n`: exactly `CONNECT <port>` with
 * one space, the port 1 to 10 decimal digits (leading zeros allowed) and at
 * most 4294967294 (4294967295 is VMADDR_PORT_ANY). Nothing else is allowed:
 * no `\r`, no trailing space, no lowercase.
 */
export function parseConnectLine(line: Uint8Array): ConnectLineResult {
  const bad = (reason: ConnectLineError, why: string): ConnectLineResult => ({ ok: false, reason, message: `${why} in CONNECT line ${printable(line)}` });
  let head = true;
  for (let i = 0; i < PREFIX.length; i++) if (line[i] !== PREFIX.charCodeAt(i)) head = false;
  if (!head || (line.length > PREFIX.length && line[PREFIX.length] !== SP)) {
    const lower = Buffer.from(line.subarray(0, PREFIX.length)).toString('latin1').toUpperCase() === PREFIX;
    return bad('not-connect', lower ? 'the command is case-sensitive: "CONNECT <port>" expected' : '"CONNECT <port>" expected');
  }
  const start = PREFIX.length + 1;
  let end = start;
  while (end < line.length && line[end] !== SP && line[end] !== TAB && line[end] !== CR) end++;
  if (end === start || start > line.length) return bad('bad-port', 'no port');
  const token = line.subarray(start, end);
  if (token.length > 10 || !token.every((b) => b >= 0x30 && b <= 0x39)) return bad('bad-port', 'port is not a decimal u32');
  const port = Number(Buffer.from(token).toString('latin1'));
  if (port > 0xffffffff) return bad('bad-port', 'port is above 4294967295');
  if (port === VSOCK_PORT_ANY) return bad('bad-port', 'port 4294967295 is VMADDR_PORT_ANY');
  if (end < line.length) {
    const why = line[end] === CR ? 'a \\r before the \\n (lines end with \\n alone)' : 'characters after the port';
    return bad('trailing-garbage', why);
  }
  return { ok: true, port };
}

/** A line for a log: at most 40 bytes, anything outside printable ASCII as \xNN. */
function printable(line: Uint8Array): string {
  let s = '';
  for (const b of line.subarray(0, 40)) s += b >= 0x20 && b < 0x7f && b !== 0x22 && b !== 0x5c ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`;
  return `"${s}${line.length > 40 ? '...' : ''}" (${line.length} bytes)`;
}
