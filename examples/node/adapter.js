#!/usr/bin/env node
// nodefolder: a remora adapter written in JavaScript, the reference for
// authors in other languages. A shared folder (Syncthing, NFS, a USB stick)
// is the channel: each envelope is the file log/<idempotency key>, each
// board value board/<key>. Everything an adapter process owes its host is
// here, with @grpc/grpc-js: the go-plugin handshake line, AutoMTLS, the
// health and controller services, the remora.adapter.v1 service, typed
// errors in the status details, JSON logs on stderr, and clean exit.
// docs/adapter-protocol.md is the specification it follows.
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const net = require('net');
const os = require('os');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');
const forge = require('node-forge');

const NAME = 'nodefolder';
const VERSION = '1.0.0';
const PROTOCOL = 1;
const COOKIE_KEY = 'REMORA_ADAPTER_PLUGIN';
const COOKIE_VALUE = 'b9f3a1c6e2d84f57a0c1-remora-adapter';
const MAX_PAYLOAD = 64 << 10;
const POLL_MS = 250;

// The proto is the one the Go side is generated from.
const ADAPTER_PROTO = path.join(__dirname, '..', '..', 'sdk', 'internal', 'wire', 'adapter.proto');
const protos = [ADAPTER_PROTO, path.join(__dirname, 'plugin.proto'), path.join(__dirname, 'health.proto'), path.join(__dirname, 'status.proto')];

// Error codes (docs/adapter-protocol.md §5) and the gRPC status sent with each.
const Code = { unknown: 0, unsupported: 1, authFailed: 2, needsUserAction: 3, notFound: 4, rateLimited: 5,
  tooLarge: 6, cursorInvalid: 7, unavailable: 8, badConfig: 9, invalidArgument: 10 };
const grpcStatus = [grpc.status.UNKNOWN, grpc.status.UNIMPLEMENTED, grpc.status.UNAUTHENTICATED,
  grpc.status.FAILED_PRECONDITION, grpc.status.NOT_FOUND, grpc.status.RESOURCE_EXHAUSTED,
  grpc.status.INVALID_ARGUMENT, grpc.status.OUT_OF_RANGE, grpc.status.UNAVAILABLE,
  grpc.status.INVALID_ARGUMENT, grpc.status.INVALID_ARGUMENT];

const caps = {
  max_payload: MAX_PAYLOAD, counting: 'bytes', text: false, max_batch: 0, board: true, push: false,
  poll_interval_ms: POLL_MS, latency_ms: POLL_MS, retention_ms: 0, addressed: false, delete: 'any',
  idempotency_level: 'strong', idempotency_window_ms: 0, rate_limit_requests: 0, rate_limit_per_ms: 0,
};

// ---- logging: one JSON object per line on stderr (§6) ----

const levels = { debug: 0, info: 1, warn: 2, error: 3 };
const minLevel = levels[(process.env.REMORA_ADAPTER_LOG_LEVEL || 'INFO').toLowerCase()] ?? 1;

function log(level, message, attrs = {}) {
  if (levels[level] < minLevel) return;
  const ts = new Date().toISOString().replace(/\.(\d{3})Z$/, '.$1000Z'); // microseconds
  process.stderr.write(JSON.stringify({ '@timestamp': ts, '@level': level, '@message': message, ...attrs }) + '\n');
}

// ---- typed errors ----


// readItem reads an item file through a limit: only a regular file (no
// link, FIFO or device: O_NOFOLLOW, O_NONBLOCK, then the type of the open
// descriptor) of at most MAX_PAYLOAD bytes; anything else is skipped (null).
function readItem(file) {
  const fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile() || st.size > MAX_PAYLOAD) return null;
    const buf = Buffer.alloc(MAX_PAYLOAD + 1);
    let n = 0;
    for (let k; n < buf.length && (k = fs.readSync(fd, buf, n, buf.length - n, null)) > 0;) n += k;
    return n > MAX_PAYLOAD ? null : buf.subarray(0, n);
  } finally {
    fs.closeSync(fd);
  }
}

class AdapterError extends Error {
  constructor(code, message, retryAfterMs = 0) {
    super(message);
    this.code = code;
    this.retryAfterMs = retryAfterMs;
  }
}

function wireError(err) {
  if (err instanceof AdapterError) return { code: err.code, message: err.message, retry_after_ms: String(err.retryAfterMs) };
  return { code: Code.unknown, message: `${NAME}: ${err.message}`, retry_after_ms: '0' };
}

let types; // protobufjs types for the status details

// callError is a failed call: a gRPC status whose single detail is a
// remora.adapter.v1.Error, in the grpc-status-details-bin trailer.
function callError(err) {
  const e = wireError(err);
  const detail = types.Error.encode({ code: e.code, message: e.message, retryAfterMs: Number(e.retry_after_ms) }).finish();
  const status = types.Status.encode({ code: grpcStatus[e.code] ?? grpc.status.UNKNOWN, message: e.message,
    details: [{ type_url: 'type.googleapis.com/remora.adapter.v1.Error', value: detail }] }).finish();
  const metadata = new grpc.Metadata();
  metadata.set('grpc-status-details-bin', Buffer.from(status));
  return { code: grpcStatus[e.code] ?? grpc.status.UNKNOWN, details: e.message, metadata };
}

// ---- the folder channel ----

const KEY = /^[A-Za-z0-9_-]{1,64}$/;

function checkKey(what, key) {
  if (!KEY.test(key)) {
    throw new AdapterError(Code.invalidArgument, `${NAME}: ${what} ${JSON.stringify(String(key).slice(0, 80))}: want 1 to 64 characters of [A-Za-z0-9_-]`);
  }
}

// writeAtomic writes a file under a temporary name, flushes it, and
// renames it into place: a reader (or a sync tool) never sees half of it.
function writeAtomic(file, data) {
  const tmp = path.join(path.dirname(file), `.tmp-${crypto.randomBytes(8).toString('hex')}`);
  const fd = fs.openSync(tmp, 'w', 0o644);
  try {
    fs.writeSync(fd, data);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
}

function ioError(op, err) {
  if (err instanceof AdapterError) return err;
  if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return new AdapterError(Code.unavailable, `${NAME}: ${op}: the folder is gone (${err.code}): is it mounted?`);
  if (err.code === 'EACCES' || err.code === 'EPERM') return new AdapterError(Code.needsUserAction, `${NAME}: ${op}: permission denied: let this user read and write the folder`);
  return new AdapterError(Code.unavailable, `${NAME}: ${op}: ${err.message}`);
}

// Index numbers the log files as this device first lists them, so that a
// cursor is "after number N of index X": late files (a sync tool, a slow
// friend) get the next number and are never skipped. It lives in the state
// dir; a cursor from another index (state lost, folder replaced) or ahead of
// this one (state restored from an older copy) is "cursor invalid".
class Index {
  constructor(file, folderID) {
    this.file = file;
    this.folder = folderID;
    this.entries = [];
    this.have = new Set();
    this.next = 1;
    let lines = [];
    try {
      lines = fs.readFileSync(file, 'utf8').split('\n');
    } catch { /* new */ }
    const head = (lines[0] || '').split(' ');
    if (head[0] === 'nodefolder-index' && head[2] === folderID && /^[0-9a-f]{32}$/.test(head[1])) {
      this.id = Buffer.from(head[1], 'hex');
      for (const line of lines.slice(1)) {
        const [seq, name] = line.split(' ');
        if (!name || !KEY.test(name) || Number(seq) !== this.next) break; // a torn last line
        this.add1(name);
      }
    } else {
      this.id = crypto.randomBytes(16);
      fs.writeFileSync(file, `nodefolder-index ${this.id.toString('hex')} ${folderID}\n`);
    }
  }

  add1(name) {
    this.entries.push({ seq: this.next, name });
    this.have.add(name);
    this.next++;
  }

  // add numbers the names not indexed yet and makes them durable first.
  add(names) {
    const fresh = names.filter((n) => !this.have.has(n)).sort();
    if (fresh.length === 0) return;
    const lines = fresh.map((n, i) => `${this.next + i} ${n}\n`).join('');
    const fd = fs.openSync(this.file, 'a');
    try {
      fs.writeSync(fd, lines);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fresh.forEach((n) => this.add1(n));
  }

  cursor(seq) {
    const b = Buffer.alloc(24);
    this.id.copy(b, 0);
    b.writeBigUInt64BE(BigInt(seq), 16);
    return b;
  }

  start(cursor) {
    if (!cursor || cursor.length === 0) return 0;
    if (cursor.length !== 24) throw new AdapterError(Code.cursorInvalid, `${NAME}: malformed cursor: resubscribe from the start`);
    if (!cursor.subarray(0, 16).equals(this.id)) throw new AdapterError(Code.cursorInvalid, `${NAME}: the cursor belongs to another index (state lost or folder replaced): resubscribe from the start`);
    const seq = Number(cursor.readBigUInt64BE(16));
    if (seq >= this.next) throw new AdapterError(Code.cursorInvalid, `${NAME}: the cursor is ahead of the index (state restored from an older copy): resubscribe from the start`);
    return seq;
  }
}

class Channel {
  constructor(root, stateDir) {
    this.root = root;
    this.stateDir = stateDir;
    this.closed = false;
    this.ends = new Set(); // ends the running Subscribes
    this.lastError = null;
    fs.mkdirSync(path.join(root, 'log'), { recursive: true });
    fs.mkdirSync(path.join(root, 'board'), { recursive: true });
    this.index = new Index(path.join(stateDir, 'index'), this.folderID());
  }

  // folderID names this folder: a wiped or replaced folder gets a new one,
  // which makes every cursor into it invalid.
  folderID() {
    const file = path.join(this.root, '.folder-id');
    try {
      return fs.readFileSync(file, 'utf8').trim();
    } catch {
      const id = crypto.randomBytes(16).toString('hex');
      try {
        fs.writeFileSync(file, id, { flag: 'wx' });
        return id;
      } catch {
        return fs.readFileSync(file, 'utf8').trim(); // another device won the race
      }
    }
  }

  note(err) {
    this.lastError = err;
    return err;
  }

  publish(items) {
    return items.map((it) => {
      try {
        checkKey('idempotency key', it.idempotency_key);
        if (it.data.length > MAX_PAYLOAD) throw new AdapterError(Code.tooLarge, `${NAME}: item of ${it.data.length} bytes, at most ${MAX_PAYLOAD}`);
        const file = path.join(this.root, 'log', it.idempotency_key);
        if (!fs.existsSync(file)) writeAtomic(file, it.data); // the key names the file: a repeat is a no-op
        this.lastError = null;
        return { id: it.idempotency_key };
      } catch (err) {
        return { error: wireError(this.note(ioError('publish', err))) };
      }
    });
  }

  // scan lists the log, renews the index if the folder was replaced, and
  // numbers new files.
  scan() {
    const id = this.folderID();
    if (id !== this.index.folder) this.index = new Index(path.join(this.stateDir, 'index'), id);
    const names = fs.readdirSync(path.join(this.root, 'log')).filter((n) => KEY.test(n));
    this.index.add(names);
  }

  async subscribe(call) {
    let pos = this.index.start(call.request.cursor);
    const index = this.index;
    let ended = false;
    let wake = () => {};
    const end = () => { ended = true; wake(); };
    this.ends.add(end);
    call.on('cancelled', end);
    try {
      while (!ended && !this.closed) {
        try {
          this.scan();
        } catch (err) {
          throw this.note(ioError('list', err));
        }
        if (this.index !== index) throw new AdapterError(Code.cursorInvalid, `${NAME}: the folder was replaced: resubscribe from the start`);
        for (const e of index.entries.filter((x) => x.seq > pos)) {
          if (ended) return;
          let data = null;
          try {
            data = readItem(path.join(this.root, 'log', e.name));
          } catch (err) {
            if (err.code !== 'ENOENT' && err.code !== 'ELOOP') throw this.note(ioError('read', err));
          }
          const d = data ? { id: e.name, data, cursor: index.cursor(e.seq) } : { skip: true, cursor: index.cursor(e.seq) };
          if (!call.write(d)) await new Promise((resolve) => call.once('drain', resolve));
          pos = e.seq;
        }
        this.lastError = null;
        await new Promise((resolve) => {
          const t = setTimeout(resolve, POLL_MS);
          wake = () => { clearTimeout(t); resolve(); };
        });
      }
    } finally {
      this.ends.delete(end);
    }
  }

  put(key, value) {
    checkKey('board key', key);
    if (value.length > MAX_PAYLOAD) throw new AdapterError(Code.tooLarge, `${NAME}: board value of ${value.length} bytes, at most ${MAX_PAYLOAD}`);
    try {
      writeAtomic(path.join(this.root, 'board', key), value);
    } catch (err) {
      throw this.note(ioError('board put', err));
    }
  }

  get(keys) {
    let names = keys;
    try {
      if (names.length === 0) names = fs.readdirSync(path.join(this.root, 'board'));
    } catch (err) {
      throw this.note(ioError('board get', err));
    }
    const entries = [];
    for (const key of names.filter((k) => KEY.test(k))) {
      try {
        const file = path.join(this.root, 'board', key);
        entries.push({ key, value: fs.readFileSync(file), time_unix_nano: String(BigInt(Math.round(fs.statSync(file).mtimeMs)) * 1000000n) });
      } catch (err) {
        if (err.code !== 'ENOENT') throw this.note(ioError('board get', err));
      }
    }
    return entries;
  }

  delete(ids) {
    return ids.map((id) => {
      try {
        checkKey('item ID', id);
        fs.rmSync(path.join(this.root, 'log', id), { force: true }); // gone already is success
        return {};
      } catch (err) {
        return { error: wireError(ioError('delete', err)) };
      }
    });
  }

  health() {
    if (this.lastError) return { state: 'down', message: this.lastError.message, counters: {} };
    return { state: 'ok', message: `${this.root}: ${this.index.entries.length} items indexed`, counters: { indexed: String(this.index.entries.length) } };
  }

  close() {
    this.closed = true;
    for (const end of this.ends) end();
  }
}

// ---- the remora.adapter.v1.Adapter service ----

const channels = new Map();
let nextHandle = 1;

function channelOf(handle) {
  const ch = channels.get(String(handle));
  if (!ch) throw new AdapterError(Code.notFound, `${NAME}: no channel with handle ${handle} (closed, or from an earlier process)`);
  return ch;
}

function configure(req) {
  let cfg;
  try {
    cfg = JSON.parse(req.config_json.toString('utf8') || '{}');
  } catch (err) {
    throw new AdapterError(Code.badConfig, `${NAME}: config is not JSON: ${err.message}`);
  }
  for (const k of Object.keys(cfg)) {
    if (k !== 'path') throw new AdapterError(Code.badConfig, `${NAME}: unknown config field "${k}": the fields are path`);
  }
  if (typeof cfg.path !== 'string' || !path.isAbsolute(cfg.path)) throw new AdapterError(Code.badConfig, `${NAME}: config field "path": want the folder's absolute path`);
  if (!fs.statSync(cfg.path, { throwIfNoEntry: false })?.isDirectory()) throw new AdapterError(Code.badConfig, `${NAME}: config field "path": ${cfg.path} is not a folder`);
  if (!req.state_dir) throw new AdapterError(Code.badConfig, `${NAME}: no state dir`);
  const ch = new Channel(cfg.path, req.state_dir);
  const handle = String(nextHandle++);
  channels.set(handle, ch);
  log('info', 'channel open', { channel: req.channel_id, path: cfg.path });
  return { handle, capabilities: caps, features: { board: true, delete: true, health: true } };
}

// unary wraps a handler: its result, or its error as a typed status.
function unary(f) {
  return (call, callback) => {
    try {
      callback(null, f(call.request));
    } catch (err) {
      callback(callError(err));
    }
  };
}

const adapterService = {
  Info: unary(() => ({ name: NAME, version: VERSION, summary: 'a shared folder, from JavaScript', defaults: caps })),
  Configure: unary(configure),
  Publish: unary((req) => ({ results: channelOf(req.handle).publish(req.items) })),
  Subscribe: (call) => {
    let ch;
    try {
      ch = channelOf(call.request.handle);
    } catch (err) {
      call.emit('error', callError(err));
      return;
    }
    ch.subscribe(call).then(() => call.end(), (err) => call.emit('error', callError(err)));
  },
  BoardPut: unary((req) => { channelOf(req.handle).put(req.key, req.value); return {}; }),
  BoardGet: unary((req) => ({ entries: channelOf(req.handle).get(req.keys) })),
  Delete: unary((req) => ({ results: channelOf(req.handle).delete(req.ids) })),
  Health: unary((req) => channelOf(req.handle).health()),
  CloseChannel: unary((req) => {
    const ch = channels.get(String(req.handle));
    if (ch) ch.close();
    channels.delete(String(req.handle));
    return {};
  }),
};

// ---- process: handshake, AutoMTLS, stopping ----

// selfSigned makes this run's server certificate, as go-plugin's AutoMTLS
// does (§2): CN and DNS name localhost, a CA, server and client auth.
function selfSigned() {
  const { privateKey, publicKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(publicKey.export({ type: 'spki', format: 'pem' }));
  cert.serialNumber = '01' + crypto.randomBytes(15).toString('hex');
  cert.validity.notBefore = new Date(Date.now() - 30 * 1000);
  cert.validity.notAfter = new Date(Date.now() + 365 * 24 * 3600 * 1000);
  const name = [{ name: 'commonName', value: 'localhost' }];
  cert.setSubject(name);
  cert.setIssuer(name);
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, keyCertSign: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true, clientAuth: true },
    { name: 'subjectAltName', altNames: [{ type: 2, value: 'localhost' }] },
  ]);
  const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' });
  cert.sign(forge.pki.privateKeyFromPem(keyPem), forge.md.sha256.create());
  const der = Buffer.from(forge.asn1.toDer(forge.pki.certificateToAsn1(cert)).getBytes(), 'binary');
  return { keyPem, certPem: forge.pki.certificateToPem(cert), der };
}

function describe() {
  const d = (ms) => `${ms}ms`;
  process.stdout.write(JSON.stringify({
    protocol_version: PROTOCOL, name: NAME, version: VERSION, summary: 'a shared folder, from JavaScript',
    defaults: { max_payload: caps.max_payload, counting: caps.counting, text: caps.text, board: caps.board, push: caps.push,
      poll_interval: d(POLL_MS), latency: d(POLL_MS), addressed: caps.addressed, delete: caps.delete,
      idempotency: { level: caps.idempotency_level } },
  }, null, 2) + '\n');
}

function stop(why) {
  log('info', 'stopping', { why });
  for (const ch of channels.values()) ch.close();
  channels.clear();
  // Let the last answers and log lines out, then go.
  setTimeout(() => process.exit(0), 100);
}

function main() {
  const args = process.argv.slice(2);
  if (args.length === 1 && args[0] === 'describe') return describe();
  if (args.length > 0) {
    process.stderr.write(`${NAME}: unexpected arguments ${JSON.stringify(args)}: the only argument an adapter takes is "describe"\n`);
    process.exit(2);
  }
  if (process.env[COOKIE_KEY] !== COOKIE_VALUE) {
    process.stderr.write(`This is the remora adapter "${NAME}" (version ${VERSION}, adapter protocol ${PROTOCOL}).\n` +
      'remora starts it itself; it is not meant to be run by hand.\nRun it with the argument "describe" to see what it offers.\n');
    process.exit(1);
  }
  const versions = (process.env.PLUGIN_PROTOCOL_VERSIONS || '').split(',').map(Number);
  if (!versions.includes(PROTOCOL)) log('warn', 'the host speaks no protocol this adapter does', { host: versions, adapter: PROTOCOL });

  const loaded = protoLoader.loadSync(protos, { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
  const pkg = grpc.loadPackageDefinition(loaded);
  const root = protobuf.loadSync([ADAPTER_PROTO, path.join(__dirname, 'status.proto')]);
  types = { Error: root.lookupType('remora.adapter.v1.Error'), Status: root.lookupType('google.rpc.Status') };

  const limit = 64 << 20;
  const server = new grpc.Server({ 'grpc.max_receive_message_length': limit, 'grpc.max_send_message_length': limit });
  server.addService(pkg.remora.adapter.v1.Adapter.service, adapterService);
  server.addService(pkg.grpc.health.v1.Health.service, { Check: (call, cb) => cb(null, { status: 'SERVING' }) });
  server.addService(pkg.plugin.GRPCController.service, { Shutdown: (call, cb) => { cb(null, {}); stop('shutdown'); } });
  server.addService(pkg.plugin.GRPCStdio.service, { StreamStdio: () => { /* nothing to forward: stays open until the host goes */ } });

  const { keyPem, certPem, der } = selfSigned();
  const creds = grpc.ServerCredentials.createSsl(Buffer.from(process.env.PLUGIN_CLIENT_CERT || ''),
    [{ private_key: Buffer.from(keyPem), cert_chain: Buffer.from(certPem) }], true);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'plugin'));
  const sock = path.join(dir, 'adapter.sock');
  server.bindAsync(`unix:${sock}`, creds, (err) => {
    if (err) {
      process.stderr.write(`${NAME}: listen on ${sock}: ${err.message}\n`);
      process.exit(1);
    }
    // The one line on stdout (§1); nothing else may go there.
    process.stdout.write(`1|${PROTOCOL}|unix|${sock}|grpc|${der.toString('base64').replace(/=+$/, '')}\n`);
  });
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => {}); // the terminal's Ctrl-C is the host's to handle
  const fd = Number(process.env.REMORA_ADAPTER_LIFELINE_FD);
  if (fd > 2) { // EOF on the lifeline: the host is gone
    // A socket, not fs.createReadStream: a blocking read of a pipe in
    // libuv's thread pool would hold up process exit.
    const lifeline = new net.Socket({ fd, readable: true, writable: false });
    lifeline.on('data', () => {});
    lifeline.on('end', () => stop('host gone'));
    lifeline.on('error', () => {});
  }
}

main();
