// A guest and a host on one virtio-vsock device: the host listens on port
// 5000 and echoes, the guest connects, writes a few lines and prints what
// comes back. The device's rx and tx queues run on worker threads; both
// socket stacks run here.
// Run: npm run build && node examples/vsock-echo.mjs
import { SharedArena, VirtioVsockDevice, VsockDriver, VsockHost } from 'virtio-lab';

const arena = new SharedArena(48 << 20);
const device = new VirtioVsockDevice(arena.guestMemory(40 << 20), { guestCid: 3, arena });
const host = new VsockHost(device);
const guest = await VsockDriver.open(device);

try {
  host.listen(5000).on('connection', (sock) => {
    console.log(`host: connection from cid ${sock.remoteCid} port ${sock.remotePort}`);
    sock.on('error', (e) => console.log(`host: ${e.code}`)); // e.g. ECONNRESET when the guest goes away
    sock.pipe(sock);
  });

  const sock = guest.connect(5000);
  await new Promise((resolve, reject) => sock.once('connect', resolve).once('error', reject));
  console.log(`guest: connected from cid ${guest.guestCid} port ${sock.localPort} to host port ${sock.remotePort}`);
  let echoed = '';
  sock.setEncoding('utf8');
  sock.on('data', (s) => (echoed += s));
  const lines = ['hello over virtio-vsock', 'credit-based flow control', 'bye'];
  for (const line of lines) sock.write(`${line}\n`);
  sock.end();
  await new Promise((resolve) => sock.once('end', resolve));
  process.stdout.write(echoed.replace(/^/gm, 'guest got: ').replace(/guest got: $/, ''));
  const st = device.vsockStats();
  console.log(`device: ${st.txPackets} packets guest->host, ${st.rxPackets} host->guest, ${st.drops} dropped, ${st.errors} ring errors`);
} finally {
  await guest.close();
  await host.close();
  await device.close();
}
