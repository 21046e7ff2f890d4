import { type Socket as DgramSocket, createSocket } from 'node:dgram';
import { unlinkSync } from 'node:fs';
import { type Server, type Socket, connect, createServer } from 'node:net';
import type { SocketLinkOptions, StreamAddress } from './socket-link-options.js';
import { udpBufferSize } from './udp-socket-counters.js';

// The set-up and tear-down of a socket link's sockets: each resolves once the
// socket is usable and hands later errors to `onError`.

/** A stream server on a Unix path or TCP host:port (default 127.0.0.1). */
export function listenStream(address: StreamAddress, onConnection: (s: Socket) => void, onError: (e: Error) => void): Promise<Server> {
  const server = createServer(onConnection);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    const done = (): void => {
      server.off('error', reject);
      server.on('error', onError);
      resolve(server);
    };
    if ('path' in address) server.listen(address.path, done);
    else server.listen(address.port, address.host ?? '127.0.0.1', done);
  });
}

/** A stream connection to a Unix path or TCP host:port (default 127.0.0.1). */
export function connectStream(address: StreamAddress): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = 'path' in address ? connect(address.path) : connect(address.port, address.host ?? '127.0.0.1');
    s.once('error', reject);
    s.once('connect', () => {
      s.off('error', reject);
      resolve(s);
    });
  });
}

/** A UDP socket bound to `options.local` (default 127.0.0.1, any port) with the buffer sizes asked for. */
export function bindDatagram(
  options: Extract<SocketLinkOptions, { transport: 'dgram' }>,
  onMessage: (msg: Buffer) => void,
  onError: (e: Error) => void,
): Promise<DgramSocket> {
  const recvBufferSize = udpBufferSize(options.recvBufferSize, 'recvBufferSize');
  const sendBufferSize = udpBufferSize(options.sendBufferSize, 'sendBufferSize');
  // Node sets both buffer sizes when the socket is bound.
  const u = createSocket({ type: 'udp4', recvBufferSize, sendBufferSize });
  u.on('message', onMessage);
  return new Promise((resolve, reject) => {
    u.once('error', (e) => {
      closeDatagram(u).then(() => reject(e), reject);
    });
    u.bind(options.local?.port ?? 0, options.local?.host ?? '127.0.0.1', () => {
      u.removeAllListeners('error');
      u.on('error', onError);
      resolve(u);
    });
  });
}

/** Destroy a stream socket; resolves once it is closed. */
export function closeStream(s: Socket): Promise<void> {
  const closed = new Promise<void>((r) => (s.destroyed ? r() : s.once('close', () => r())));
  s.destroy();
  return closed;
}

/** Close a server; resolves once it is closed (at once when it never listened). */
export function closeServer(server: Server): Promise<void> {
  return new Promise((r) => server.close(() => r()));
}

/** Close a UDP socket; resolves once it is closed (at once when it never bound or is closed already). */
export function closeDatagram(u: DgramSocket): Promise<void> {
  return new Promise((r) => {
    try {
      u.close(() => r());
    } catch {
      r();
    }
  });
}

/** Remove a Unix socket file a server created; no error when it is gone already. */
export function unlinkSocketFile(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // Already gone (net.Server removes its own file on close on some platforms).
  }
}
