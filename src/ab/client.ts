/**
 * The load generator of `vls ab`: a separate Node process the tool starts once per side and round
 * (through the preload for B). It opens the connections, notes which handle class each socket got
 * (TCP, or SessionHandle for a cut-through session), runs the workload unmeasured for the warmup,
 * then measures one window into an HDR histogram and reports it over IPC (see protocol.ts).
 *
 *   closed loop: each connection sends as soon as its previous operation completed;
 *                latency = completion - send.
 *   open loop:   operation k of connection j is due at start + (j + k * connections) / rate; it is
 *                sent when due (or as soon as the previous one completed, if that is later);
 *                latency = completion - due time, so a stall counts against every operation it
 *                delayed (coordinated omission corrected, as wrk2 does).
 *   bulk:        each connection writes `size`-byte chunks as fast as the socket takes them;
 *                latency = write() to its callback (the transport took the bytes).
 */
import * as net from 'node:net';
import { performance } from 'node:perf_hooks';

import { encodeHistogram, newHistogram } from './histogram';
import { HttpResponseParser } from './http-response';
import type { ClientConfig, ClientMessage, ToolMessage } from './protocol';

type Phase = 'connect' | 'warmup' | 'measure' | 'drain';

/** How long operations outstanding at the end of the window may take to complete (at least). */
const DRAIN_MS = 2000;

interface Conn {
  index: number;
  socket: net.Socket;
  /** An operation is outstanding. */
  busy: boolean;
  /** When the outstanding operation was due (open loop) or sent (closed loop), ms. */
  due: number;
  /** Open loop: when the next operation is due, ms. */
  nextDue: number;
  timer: NodeJS.Timeout | undefined;
  /** echo: bytes of the echo received so far. */
  got: number;
  parser: HttpResponseParser | undefined;
  /** The server closed this connection after a response; a new one took its place. */
  retired: boolean;
  /** bulk: since when the connection waits for 'drain' (ms), 0 when it does not. */
  drainWait: number;
}

class LoadGenerator {
  private readonly cfg: ClientConfig;
  private readonly hist = newHistogram();
  private phase: Phase = 'connect';
  private readonly conns: Conn[] = [];
  private ops = 0;
  private bytes = 0;
  private reconnects = 0;
  private readonly handles: Record<string, number> = {};
  private status: Record<string, number> = {};
  private winStart = 0;
  private winEnd = 0;
  private cpuStart: NodeJS.CpuUsage = { user: 0, system: 0 };
  private cpuUs = 0;
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly message: Buffer;
  private readonly method: string;
  /** Open loop: ms between two operations of one connection. */
  private readonly interval: number;
  private finished = false;
  /** What stuck connections were doing (none completed in the window, or outstanding after it). */
  private diag: string[] = [];
  /** Operations outstanding DRAIN_MS after the window ended. */
  private unfinished = 0;
  private drainTimer: NodeJS.Timeout | undefined;

  constructor(cfg: ClientConfig) {
    this.cfg = cfg;
    this.interval = cfg.rate === null ? 0 : (1000 * cfg.connections) / cfg.rate;
    if (cfg.workload === 'http') {
      this.method = cfg.size > 0 ? 'POST' : 'GET';
      const head =
        `${this.method} ${cfg.path} HTTP/1.1\r\nHost: ${cfg.host.includes(':') ? `[${cfg.host}]` : cfg.host}:${cfg.port}\r\n` +
        `User-Agent: node-vls-ab\r\nAccept: */*\r\n` +
        (cfg.size > 0 ? `Content-Type: application/octet-stream\r\nContent-Length: ${cfg.size}\r\n` : '') +
        '\r\n';
      this.message = Buffer.concat([Buffer.from(head, 'latin1'), Buffer.alloc(cfg.size, 0x61)]);
    } else {
      this.method = '';
      this.message = Buffer.alloc(cfg.size, 0x61);
    }
  }

  start(): void {
    let pending = this.cfg.connections;
    for (let i = 0; i < this.cfg.connections; i++) {
      this.open(i, () => {
        if (--pending === 0) this.connected();
      });
    }
  }

  private send(m: ClientMessage, cb?: () => void): void {
    if (process.send) process.send(m, undefined, undefined, cb && (() => cb()));
    else {
      process.stdout.write(JSON.stringify(m) + '\n');
      cb?.();
    }
  }

  fail(code: string, message: string): void {
    if (this.finished) return;
    this.finished = true;
    for (const c of this.conns) c.socket.destroy();
    this.send({ t: 'failed', code, message }, () => process.exit(1));
  }

  /** Opens connection `index` (again, after the server closed it) and calls back once connected. */
  private open(index: number, onConnect: () => void): void {
    const socket = net.connect({ host: this.cfg.host, port: this.cfg.port });
    const c: Conn = { index, socket, busy: false, due: 0, nextDue: 0, timer: undefined, got: 0, parser: undefined, retired: false, drainWait: 0 };
    this.conns[index] = c;
    const connectTimer = setTimeout(() => this.fail('ETIMEDOUT', `connection ${index} to ${this.cfg.host}:${this.cfg.port} did not connect in 10 s`), 10000);
    socket.once('connect', () => {
      clearTimeout(connectTimer);
      const h = (socket as unknown as { _handle?: { constructor?: { name?: string } } })._handle;
      const name = h?.constructor?.name ?? 'none';
      this.handles[name] = (this.handles[name] ?? 0) + 1;
      if (this.cfg.workload !== 'bulk') socket.setNoDelay(true);
      onConnect();
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(connectTimer);
      if (this.phase === 'drain') return;
      this.fail(err.code ?? 'ERR_VLS_AB_SOCKET', `connection ${index}: ${err.message}`);
    });
    if (this.cfg.workload === 'echo') {
      socket.on('data', (d: Buffer) => this.onEcho(c, d));
    } else if (this.cfg.workload === 'http') {
      c.parser = new HttpResponseParser((st, keepAlive) => this.onResponse(c, st, keepAlive));
      socket.on('data', (d: Buffer) => {
        try {
          c.parser!.feed(d);
        } catch (e) {
          this.fail((e as { code?: string }).code ?? 'ERR_VLS_AB_HTTP_PROTOCOL', `connection ${index}: ${(e as Error).message}`);
        }
      });
    } else {
      socket.resume(); // a sink sends nothing; an echo server's bytes are read and dropped
    }
    socket.on('end', () => {
      if (c.parser) {
        try {
          c.parser.end();
        } catch (e) {
          if (this.phase !== 'drain') this.fail('ERR_VLS_AB_HTTP_PROTOCOL', `connection ${index}: ${(e as Error).message}`);
        }
      }
    });
    socket.on('close', () => {
      if (this.phase === 'drain' || this.finished || c.retired) return;
      this.fail('ERR_VLS_AB_CONNECTION_CLOSED', `the server closed connection ${index} during the ${this.phase}`);
    });
  }

  private connected(): void {
    this.send({ t: 'connected', handles: this.handles });
    this.phase = 'warmup';
    const t0 = performance.now();
    for (const c of this.conns) c.nextDue = t0 + (c.index * this.interval) / this.cfg.connections;
    const progress = setInterval(() => {
      if (this.phase === 'warmup') this.send({ t: 'progress', phase: 'warmup', elapsed: (performance.now() - t0) / 1000, ops: 0 });
      else if (this.phase === 'measure') {
        this.send({ t: 'progress', phase: 'measure', elapsed: (performance.now() - this.winStart) / 1000, ops: this.ops });
      }
    }, 250);
    progress.unref();
    this.timers.push(progress);
    if (this.cfg.warmup > 0) this.timers.push(setTimeout(() => this.startWindow(), this.cfg.warmup * 1000));
    for (const c of this.conns) this.issue(c);
    if (this.cfg.warmup === 0) this.startWindow();
  }

  private startWindow(): void {
    this.phase = 'measure';
    this.send({ t: 'mark', phase: 'start' });
    this.hist.reset();
    this.ops = 0;
    this.bytes = 0;
    this.status = {};
    this.cpuStart = process.cpuUsage();
    this.winStart = performance.now();
    if (this.cfg.duration !== null) this.timers.push(setTimeout(() => this.endWindow(), this.cfg.duration * 1000));
  }

  private endWindow(): void {
    if (this.phase !== 'measure') return;
    this.winEnd = performance.now();
    if (this.ops === 0) this.diag = this.conns.map((c) => `no completion in the window: ${this.describe(c, this.winEnd)}`);
    const cpu = process.cpuUsage(this.cpuStart);
    this.cpuUs = cpu.user + cpu.system;
    this.phase = 'drain';
    this.send({ t: 'mark', phase: 'end' });
    for (const t of this.timers) clearTimeout(t);
    for (const c of this.conns) clearTimeout(c.timer);
    // A server whose answers take seconds gets proportionally longer (up to 20 s).
    const wait = Math.min(20000, Math.max(DRAIN_MS, (2 * this.hist.maxValue) / 1e6));
    this.drainTimer = setTimeout(() => this.abandon(), wait);
    this.maybeFinish();
  }

  /**
   * Operations still outstanding DRAIN_MS (or twice the slowest seen) after the window are stuck
   * (a lost wake-up, a server that stopped answering). Each is recorded with the time it has
   * waited so far (a lower bound of its latency, so the maximum shows the stall), counted as
   * unfinished and described, and the client finishes anyway.
   */
  private abandon(): void {
    const now = performance.now();
    for (const c of this.conns) {
      if (c.busy || c.drainWait) {
        this.unfinished++;
        this.diag.push(this.describe(c, now));
      }
      if (c.busy) {
        this.hist.recordValue(Math.max(1, Math.round((now - c.due) * 1e6)));
        c.busy = false;
      }
    }
    this.maybeFinish();
  }

  /**
   * Whether completed operations are recorded. The warm-up records too, into the histogram and
   * counts that startWindow() resets: the measured operations then run the code V8 optimized
   * during the warm-up, rather than a path taken first at the start of the window (which
   * deoptimizes and recompiles on the CPU being measured).
   */
  private get recording(): boolean {
    return this.phase === 'measure' || this.phase === 'warmup';
  }

  /** Records a completed operation of connection c. */
  private complete(c: Conn, bytes: number): void {
    const t = performance.now();
    c.busy = false;
    if (this.recording) {
      this.hist.recordValue(Math.max(1, Math.round((t - c.due) * 1e6)));
      this.ops++;
      this.bytes += bytes;
      if (this.phase === 'measure' && this.cfg.requests !== null && this.ops >= this.cfg.requests) this.endWindow();
    } else if (this.phase === 'drain' && c.due < this.winEnd) {
      // Due within the window and completed after it: its latency belongs to the window (a stall
      // across the end of the window must not vanish); ops and throughput count completions only.
      this.hist.recordValue(Math.max(1, Math.round((t - c.due) * 1e6)));
    }
  }

  /** Starts the next operation on c when it is due (echo, http). */
  private issue(c: Conn): void {
    if (this.phase === 'drain' || this.finished) {
      this.maybeFinish();
      return;
    }
    if (this.cfg.workload === 'bulk') {
      this.pump(c);
      return;
    }
    const now = performance.now();
    if (this.cfg.rate !== null) {
      if (now < c.nextDue) {
        c.timer = setTimeout(() => this.issue(c), c.nextDue - now);
        return;
      }
      c.due = c.nextDue;
      c.nextDue += this.interval;
    } else {
      c.due = now;
    }
    c.busy = true;
    c.got = 0;
    c.parser?.expect(this.method);
    c.socket.write(this.message);
  }

  private onEcho(c: Conn, d: Buffer): void {
    if (!c.busy) {
      this.fail('ERR_VLS_AB_ECHO', `connection ${c.index}: the server sent ${d.length} bytes nobody asked for (is it an echo server?)`);
      return;
    }
    c.got += d.length;
    if (c.got < this.cfg.size) return;
    if (c.got > this.cfg.size) {
      this.fail('ERR_VLS_AB_ECHO', `connection ${c.index}: ${c.got} bytes came back for a ${this.cfg.size}-byte message (is it an echo server?)`);
      return;
    }
    this.complete(c, this.cfg.size);
    this.issue(c);
  }

  private onResponse(c: Conn, status: number, keepAlive: boolean): void {
    const cls = `${Math.floor(status / 100)}xx`;
    if (this.recording) this.status[cls] = (this.status[cls] ?? 0) + 1;
    this.complete(c, this.message.length);
    if (keepAlive) {
      this.issue(c);
      return;
    }
    // The server closes this connection after the response: open a new one and go on there.
    c.retired = true;
    c.socket.destroy();
    if (this.phase === 'drain' || this.finished) {
      this.maybeFinish();
      return;
    }
    this.reconnects++;
    const due = c.nextDue;
    this.open(c.index, () => {
      const n = this.conns[c.index]!;
      n.nextDue = due;
      this.issue(n);
    });
  }

  /** bulk: writes chunks while the socket takes them, a bounded number per turn of the loop. */
  private pump(c: Conn): void {
    for (let i = 0; i < 16; i++) {
      if (this.phase === 'drain' || this.finished) {
        this.maybeFinish();
        return;
      }
      const t0 = performance.now();
      const size = this.message.length;
      const ok = c.socket.write(this.message, (err) => {
        if (err) return;
        c.due = t0;
        this.complete(c, size);
      });
      if (!ok) {
        c.drainWait = performance.now();
        c.socket.once('drain', () => {
          c.drainWait = 0;
          this.pump(c);
        });
        return;
      }
    }
    setImmediate(() => this.pump(c));
  }

  /** In the drain phase: once no operation is outstanding, close every connection and report. */
  private maybeFinish(): void {
    if (this.phase !== 'drain' || this.finished) return;
    if (this.cfg.workload !== 'bulk' && this.conns.some((c) => c.busy)) return;
    this.finished = true;
    clearTimeout(this.drainTimer);
    let open = this.conns.length;
    const closed = new Set<Conn>();
    const done = (c: Conn): void => {
      closed.add(c);
      if (--open > 0) return;
      clearTimeout(giveUp);
      clearTimeout(lastResort);
      this.report();
    };
    // A graceful end: the server sees 'end' (not a reset) and closes its side. One that does not
    // close in time is destroyed; one whose 'close' never comes even then is described, and the
    // result goes out anyway (it is complete: the window is over).
    const giveUp = setTimeout(() => {
      for (const c of this.conns) c.socket.destroy();
    }, 3000);
    const lastResort = setTimeout(() => {
      for (const c of this.conns) if (!closed.has(c)) this.diag.push(`did not close: ${this.describe(c, performance.now())}`);
      this.report();
    }, 4000);
    for (const c of this.conns) {
      if (c.socket.destroyed) done(c);
      else {
        c.socket.once('close', () => done(c));
        c.socket.end();
      }
    }
  }

  /** The state of a connection, for a window in which nothing completed. */
  private describe(c: Conn, now: number): string {
    const h = (c.socket as unknown as { _handle?: { constructor?: { name?: string } } })._handle;
    const parts = [
      `connection ${c.index} (${h?.constructor?.name ?? 'no handle'})`,
      `${c.socket.bytesWritten} bytes written, ${c.socket.bytesRead} read, ${c.socket.writableLength} queued`,
    ];
    if (c.drainWait) parts.push(`waiting for 'drain' for ${((now - c.drainWait) / 1000).toFixed(3)} s`);
    if (c.busy) parts.push(`an operation outstanding for ${((now - c.due) / 1000).toFixed(3)} s`);
    return parts.join(', ');
  }

  private reported = false;
  private report(): void {
    if (this.reported) return;
    this.reported = true;
    this.send(
      {
        t: 'result',
        histogram: encodeHistogram(this.hist),
        ops: this.ops,
        bytes: this.bytes,
        seconds: (this.winEnd - this.winStart) / 1000,
        cpuUs: this.cpuUs,
        handles: this.handles,
        status: this.status,
        reconnects: this.reconnects,
        diag: this.diag,
        unfinished: this.unfinished,
      },
      () => process.exit(0),
    );
  }
}

if (require.main === module) {
  // Without the tool (it died, or was killed) there is nobody to report to.
  process.on('disconnect', () => process.exit(2));
  const raw = process.argv[2];
  const gen = new LoadGenerator(JSON.parse(raw ?? '{}') as ClientConfig);
  process.on('uncaughtException', (e) => gen.fail('ERR_VLS_AB_CLIENT_CRASHED', e.stack ?? String(e)));
  // The tool starts us while the server starts (Node's startup overlaps), and says go once the
  // server's port accepts connections. Without the tool (run by hand), go at once.
  if (process.send) {
    const onGo = (m: ToolMessage): void => {
      if (m?.t !== 'go') return;
      process.removeListener('message', onGo);
      gen.start();
    };
    process.on('message', onGo);
  } else gen.start();
}
