// CommonJS consumers get the same API: require('virtio-lab').
const { SharedArena, VirtioNetDevice, connectNics, setupNetDriver, NetDriver } = require('virtio-lab');

(async () => {
  const arena = new SharedArena(16 << 20);
  const a = new VirtioNetDevice(arena.guestMemory(4 << 20));
  const b = new VirtioNetDevice(arena.guestMemory(4 << 20));
  connectNics(arena, a, b);
  try {
    const da = new NetDriver(await setupNetDriver(a));
    const db = new NetDriver(await setupNetDriver(b));
    db.fillRx();
    da.send(new Uint8Array(64).fill(7));
    da.flushTx();
    let got = 0;
    while (got === 0 && (await db.waitForInterrupt(10_000))) got += db.receive(() => {});
    console.log(got === 1 ? 'cjs: 1 frame received' : 'cjs: nothing received');
    process.exitCode = got === 1 ? 0 : 1;
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
})();
