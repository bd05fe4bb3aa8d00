#!/usr/bin/env node
// test_tus_client.mjs — resumable uploads driven by the real tus-js-client (npm), TAP.
//
// usage: node test_tus_client.mjs JIAYIN_BINARY   (after `npm ci` in tests/js; scripts/test.sh
// does it)
//
// Starts the real jiayin on a free loopback port, creates a family through the API, and sends
// recordings (WAVs made with sox) with tus-js-client through a small TCP proxy that reads the
// requests as they pass, so it can break a chosen PATCH after a chosen number of body bytes and
// count what the client sends. Three interruptions, each resumed to a message:
//   1. the signal drops: the client's connection dies while the server's side stays open (the
//      server does not notice); tus-js-client's own retries send HEAD, which is answered 423
//      while the server cuts the dead PATCH, then the offset, then the rest;
//   2. the app restarts: the connection is cut (the client gives up), and a new tus.Upload finds
//      the previous upload by its fingerprint (findPreviousUploads, resumeFromPreviousUpload);
//   3. the user pauses: upload.abort() mid-chunk, then upload.start() again.
// Each resume must start at the server's offset, which must count the bytes of the broken
// chunk that reached the server, and send only the rest. Then the messages are listed through
// the API and their audio downloads and decodes (ffprobe). The first recording created again
// later, without its URL, is answered whole: only its first chunk goes over the wire again. A
// terminated upload is gone.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

let tus;
try {
  tus = await import('tus-js-client');
} catch (e) {
  console.log('Bail out! tus-js-client is not installed: run `npm ci` in tests/js ' +
              '(scripts/test.sh does)');
  process.exit(1);
}

const CHUNK = 64 * 1024;
let count = 0;
let failures = 0;

function ok(cond, name, detail) {
  count++;
  if (!cond) failures++;
  console.log(`${cond ? 'ok' : 'not ok'} ${count} - ${name}`);
  if (!cond && detail !== undefined) {
    console.log('# ' + String(typeof detail === 'string' ? detail : JSON.stringify(detail))
      .replace(/\n/g, '\n# '));
  }
  return cond;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function startServer(binary) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'jiayin-tus-js-'));
  const proc = spawn(binary, ['--listen', '127.0.0.1:0', '--data', path.join(dir, 'data')],
    { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  const exited = new Promise((resolve) => proc.on('exit', (code, sig) => resolve(code ?? sig)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('server did not start: ' + log)), 20000);
    proc.stderr.on('data', (d) => {
      log += d;
      const m = /listening on 127\.0\.0\.1:(\d+)/.exec(log);
      if (m && timer) {
        clearTimeout(timer);
        resolve({ proc, port: Number(m[1]), dir, exited, log: () => log });
      }
    });
    proc.on('exit', () => reject(new Error('server exited at start: ' + log)));
  });
}

// A proxy that reads each request's head and Content-Length as it passes, so that it can break
// the Nth PATCH after K bytes of its body: 'freeze' (the client's side dies, the server's stays
// open and silent, as when the signal drops), 'cut' (both sides close after those bytes) or
// 'hold' (nothing more passes; when the client closes, the server's side closes too).
function startProxy(target) {
  const st = { up: 0, patches: 0, plan: null, zombies: [] };
  const server = net.createServer((client) => {
    const up = net.connect(target, '127.0.0.1');
    // No Nagle: a write is on the wire at once (else the bytes before a break could wait
    // in the proxy's kernel for an ACK, and never arrive).
    up.setNoDelay(true);
    client.setNoDelay(true);
    let pending = Buffer.alloc(0);
    let left = 0;
    let method = '';
    let seen = 0;
    let frozen = false;
    let hold = false;
    const forward = (b) => { st.up += b.length; up.write(b); };
    up.on('data', (d) => { if (!frozen) client.write(d); });
    up.on('close', () => { if (!frozen) client.destroy(); });
    up.on('error', () => {});
    client.on('error', () => {});
    client.on('close', () => {
      if (hold) up.end();
      else if (!frozen) up.destroy();
    });
    client.on('data', (data) => {
      if (frozen) return;
      pending = Buffer.concat([pending, data]);
      while (pending.length && !frozen) {
        if (left === 0) {
          const end = pending.indexOf('\r\n\r\n');
          if (end < 0) return; // the rest of the head is still on its way
          const head = pending.toString('latin1', 0, end);
          method = head.slice(0, head.indexOf(' '));
          const m = /\r\ncontent-length:\s*(\d+)/i.exec(head);
          left = m ? Number(m[1]) : 0;
          seen = 0;
          if (method === 'PATCH') st.patches++;
          forward(pending.subarray(0, end + 4));
          pending = pending.subarray(end + 4);
          continue;
        }
        let n = Math.min(left, pending.length);
        const plan = st.plan;
        if (plan && method === 'PATCH' && st.patches === plan.patch && seen + n >= plan.after) {
          st.plan = null;
          frozen = true;
          // The break comes once those bytes are in the server's socket: they reached it.
          st.up += plan.after - seen;
          up.write(pending.subarray(0, plan.after - seen), () => {
            if (plan.how === 'hold') {
              hold = true;
            } else {
              client.destroy();
              if (plan.how === 'cut') up.end();
              else st.zombies.push(up);
            }
            plan.fired();
          });
          return;
        }
        forward(pending.subarray(0, n));
        pending = pending.subarray(n);
        left -= n;
        seen += n;
      }
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => {
    st.port = server.address().port;
    // Breaks the PATCH `patch` PATCHes from now, after `after` bytes of its body.
    st.arm = (patch, after, how) => new Promise((fired) => {
      st.plan = { patch: st.patches + patch, after, how, fired };
    });
    st.close = () => {
      for (const z of st.zombies) z.destroy();
      server.close();
    };
    resolve(st);
  }));
}

function makeWav(file, seconds, tone) {
  const r = spawnSync('sox', ['-n', '-r', '44100', '-c', '1', '-b', '16', file, 'synth',
    String(seconds), 'sine', tone, 'vol', '0.5']);
  if (r.status !== 0) throw new Error('sox failed: ' + r.stderr);
  return fs.readFileSync(file);
}

async function api(port, method, p, { token, json, tus: isTus } = {}) {
  const headers = isTus ? { 'Tus-Resumable': '1.0.0' } : {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (json) headers['Content-Type'] = 'application/json';
  const res = await fetch(`http://127.0.0.1:${port}${p}`,
    { method, headers, body: json ? JSON.stringify(json) : undefined });
  const body = Buffer.from(await res.arrayBuffer());
  return { status: res.status, headers: res.headers, body };
}

// Runs an upload to its end: {ok, payload} from onSuccess or {ok: false, error} from onError.
function run(upload) {
  return new Promise((resolve) => {
    upload.options.onSuccess = (payload) => resolve({ ok: true, payload });
    upload.options.onError = (error) => resolve({ ok: false, error });
    upload.start();
  });
}

// Options that record what the client sends and what it is answered.
function traced(base, trace) {
  return {
    ...base,
    onBeforeRequest(req) {
      trace.push({ method: req.getMethod(), offset: req.getHeader('Upload-Offset') });
    },
    onAfterResponse(req, res) {
      trace.push({ method: req.getMethod(), status: res.getStatus(),
        offset: res.getHeader('Upload-Offset') });
    },
  };
}

const responses = (trace, method) => trace.filter((t) => t.method === method && t.status);
const requests = (trace, method) => trace.filter((t) => t.method === method && !t.status);

async function main() {
  const binary = process.argv[2];
  const srv = await startServer(binary);
  const proxy = await startProxy(srv.port);
  const endpoint = `http://127.0.0.1:${proxy.port}/v1/uploads`;
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'jiayin-tus-js-work-'));
  try {
    const fam = await api(srv.port, 'POST', '/v1/families',
      { json: { family_name: '王家', member_name: '妈妈', device_name: 'train phone' } });
    const me = JSON.parse(fam.body);
    ok(fam.status === 201, 'a family and its first phone, through the API');
    const base = {
      endpoint,
      chunkSize: CHUNK,
      headers: { Authorization: `Bearer ${me.token}` },
      metadata: { family_id: me.family.id, filename: 'story.wav' },
    };
    const ids = [];

    // 1. The signal drops in the 4th PATCH after 20000 of its bytes; the client retries.
    const wav1 = makeWav(path.join(work, 'one.wav'), 7, '330');
    let trace = [];
    let fired = proxy.arm(4, 20000, 'freeze');
    const up1 = new tus.Upload(wav1, traced({
      ...base, retryDelays: [0, 300, 600, 1000, 2000, 4000],
      metadata: { ...base.metadata, idempotency_key: 'story-1' },
    }, trace));
    let res = await run(up1);
    await fired;
    const expect1 = 3 * CHUNK + 20000;
    ok(res.ok, 'the dropped upload completes on tus-js-client\'s own retries',
      res.error && String(res.error));
    const heads = responses(trace, 'HEAD');
    ok(heads.length >= 2 && heads[0].status === 423 &&
       heads.some((h) => h.status === 200 && Number(h.offset) === expect1),
    `HEAD: 423 while the server cuts the dead PATCH, then the offset ${expect1} (3 chunks and ` +
       'the 20000 bytes of the 4th that arrived)', heads);
    const patches1 = requests(trace, 'PATCH').map((p) => Number(p.offset));
    const resumedAt = patches1.indexOf(expect1);
    ok(resumedAt === 4 && patches1.slice(0, 4).join() === [0, 1, 2, 3].map((i) => i * CHUNK).join(),
      'the resumed PATCH starts at the server\'s offset, not at 0 nor at the chunk\'s start',
      patches1);
    let mid = res.ok && res.payload.lastResponse.getHeader('Jiayin-Message-Id');
    ok(mid && /^[0-9a-z]{26}$/.test(mid), 'the last answer names the message (Jiayin-Message-Id)');
    ids.push(mid);

    // 1b. The same recording sent again later, its upload long gone from the app (a new
    //     tus.Upload, no stored URL): the creation is answered with an upload already whole,
    //     the PATCH from 0 that tus-js-client sends regardless is 409, and its HEAD finds the
    //     message. At most that first chunk goes over the wire, not the recording again.
    trace = [];
    const upAgain = new tus.Upload(wav1, traced({
      ...base, retryDelays: [0, 300, 1000],
      metadata: { ...base.metadata, idempotency_key: 'story-1' },
    }, trace));
    const beforeAgain = proxy.up;
    res = await run(upAgain);
    const sentAgain = proxy.up - beforeAgain;
    const created = responses(trace, 'POST');
    ok(res.ok && res.payload.lastResponse.getHeader('Jiayin-Message-Id') === ids[0] &&
       created.length === 1 && Number(created[0].offset) === wav1.length,
    'story-1 created again: an upload already whole, its HEAD names the same message',
    { error: String(res.error), trace });
    ok(sentAgain <= CHUNK + 8192,
      `and the recording is not sent again: ${sentAgain} bytes for ${wav1.length}`);

    // 2. The connection is cut in the 3rd PATCH after 30000 bytes and the app gives up; a new
    //    tus.Upload of the same recording finds the upload by its fingerprint and resumes it.
    const storage = new tus.FileUrlStorage(path.join(work, 'uploads.json'));
    const wav2 = makeWav(path.join(work, 'two.wav'), 8, '440');
    trace = [];
    fired = proxy.arm(3, 30000, 'cut');
    const up2 = new tus.Upload(wav2, traced({ ...base, urlStorage: storage, retryDelays: null },
      trace));
    res = await run(up2);
    await fired;
    ok(!res.ok, 'the cut upload fails (no retries: the app was closed)');
    const expect2 = 2 * CHUNK + 30000;
    const url2 = up2.url.replace(endpoint, '/v1/uploads');
    let h = await api(srv.port, 'HEAD', url2, { token: me.token, tus: true });
    for (let i = 0; h.status === 423 && i < 100; i++) {
      await sleep(50);
      h = await api(srv.port, 'HEAD', url2, { token: me.token, tus: true });
    }
    ok(h.status === 200 && Number(h.headers.get('upload-offset')) === expect2,
      `the server kept every byte that reached it: offset ${expect2}`,
      `${h.status} ${h.headers.get('upload-offset')}`);
    trace = [];
    const up2b = new tus.Upload(wav2, traced({ ...base, urlStorage: storage,
      retryDelays: [0, 300, 1000] }, trace));
    const previous = await up2b.findPreviousUploads();
    ok(previous.length === 1 && previous[0].uploadUrl === up2.url,
      'a new tus.Upload finds the previous upload by its fingerprint', previous);
    up2b.resumeFromPreviousUpload(previous[0]);
    const before = proxy.up;
    res = await run(up2b);
    const sent = proxy.up - before;
    const patches2 = requests(trace, 'PATCH').map((p) => Number(p.offset));
    ok(res.ok && patches2[0] === expect2,
      `it resumes at the server's offset ${expect2}`, { patches2, error: String(res.error) });
    ok(sent < wav2.length - expect2 + 8192,
      `and sends only the rest: ${sent} bytes with the heads, for ${wav2.length - expect2} ` +
      `bytes left of ${wav2.length}`);
    mid = res.ok && res.payload.lastResponse.getHeader('Jiayin-Message-Id');
    ok(mid, 'the resumed upload is a message');
    ids.push(mid);

    // 3. The user pauses in the 6th PATCH, 12345 bytes into it: abort(), then start() again.
    const wav3 = makeWav(path.join(work, 'three.wav'), 9, '550');
    trace = [];
    fired = proxy.arm(6, 12345, 'hold');
    const up3 = new tus.Upload(wav3, traced({ ...base, retryDelays: [0, 300, 1000] }, trace));
    const done3 = run(up3);
    await fired;
    await up3.abort();
    await sleep(200);
    up3.start();
    res = await done3;
    const expect3 = 5 * CHUNK + 12345;
    const patches3 = requests(trace, 'PATCH').map((p) => Number(p.offset));
    const head3 = responses(trace, 'HEAD').find((x) => x.status === 200);
    ok(res.ok && head3 && Number(head3.offset) === expect3 && patches3[6] === expect3,
      `abort() and start(): resumed at the server's offset ${expect3}, mid-chunk`,
      { patches3, head3, error: String(res.error) });
    mid = res.ok && res.payload.lastResponse.getHeader('Jiayin-Message-Id');
    ok(mid, 'the paused upload is a message');
    ids.push(mid);

    // The messages, as any other: listed, downloaded, decoded.
    const list = await api(srv.port, 'GET', `/v1/families/${me.family.id}/messages?since=0`,
      { token: me.token });
    const msgs = JSON.parse(list.body).messages;
    ok(list.status === 200 && msgs.length === 3 &&
       JSON.stringify(msgs.map((m) => m.id).sort()) === JSON.stringify([...ids].sort()),
    'GET /v1/families/{id}/messages lists the three messages, no more', msgs.map((m) => m.id));
    const seconds = [7, 8, 9];
    for (const [i, id] of ids.entries()) {
      const m = msgs.find((x) => x.id === id);
      const a = await api(srv.port, 'GET', `/v1/families/${me.family.id}/messages/${id}/audio`,
        { token: me.token });
      const file = path.join(work, `${id}.ogg`);
      fs.writeFileSync(file, a.body);
      const p = spawnSync('ffprobe', ['-v', 'error', '-show_entries',
        'format=duration:stream=codec_name', '-of', 'json', file], { encoding: 'utf8' });
      const info = p.status === 0 ? JSON.parse(p.stdout) : null;
      const dur = info && Number(info.format.duration);
      ok(a.status === 200 && m && a.body.length === m.bytes && info &&
         info.streams[0].codec_name === 'opus' && Math.abs(dur - seconds[i]) < 0.1 &&
         Math.abs(m.duration_ms - seconds[i] * 1000) < 100,
      `message ${i + 1}: its audio downloads and decodes (opus, ${dur} s of ${seconds[i]})`,
      p.stderr);
    }

    // Termination: abort(true) in the middle of a PATCH deletes the upload on the server (the
    // DELETE is 423 while the server cuts the PATCH, then 204 on tus-js-client's retry).
    fired = proxy.arm(2, 1000, 'hold');
    const up4 = new tus.Upload(wav1, { ...base, retryDelays: [0, 300, 1000, 2000] });
    run(up4);
    await fired;
    const url4 = up4.url.replace(endpoint, '/v1/uploads');
    let terminated = true;
    await up4.abort(true).catch(() => { terminated = false; });
    const gone = await api(srv.port, 'HEAD', url4, { token: me.token, tus: true });
    ok(terminated && gone.status === 404,
      'abort(true) terminates the upload: HEAD is 404 afterwards', gone.status);

    // A network that lets only GET and POST through (an old WebView, a carrier's proxy):
    // overridePatchMethod sends each PATCH as POST with X-HTTP-Method-Override: PATCH, and
    // the recording still becomes a message.
    trace = [];
    const wirePatches = proxy.patches;
    const up5 = new tus.Upload(wav2, traced({ ...base, overridePatchMethod: true,
      metadata: { ...base.metadata, idempotency_key: 'story-5' } }, trace));
    res = await run(up5);
    const done5 = up5.url ? await api(srv.port, 'HEAD', up5.url.replace(endpoint, '/v1/uploads'),
      { token: me.token, tus: true }) : { status: 0, headers: new Headers() };
    ok(res.ok && proxy.patches === wirePatches && requests(trace, 'PATCH').length === 0 &&
       requests(trace, 'POST').length >= 3 && done5.status === 200 &&
       /^[0-9a-z]{26}$/.test(done5.headers.get('jiayin-message-id') || ''),
      'overridePatchMethod: every chunk as POST with X-HTTP-Method-Override, and a message',
      { error: res.error && String(res.error), head: done5.status, trace: trace.slice(0, 6) });
  } finally {
    proxy.close();
    srv.proc.kill('SIGTERM');
    const code = await srv.exited;
    ok(code === 0, "the server stops cleanly (no leaks under ASan)", srv.log().slice(-3000));
    fs.rmSync(work, { recursive: true, force: true });
    fs.rmSync(srv.dir, { recursive: true, force: true });
  }
  console.log(`1..${count}`);
  process.exit(failures ? 1 : 0);
}

main().catch((e) => {
  console.log(`Bail out! ${e && e.stack ? e.stack.replace(/\n/g, ' | ') : e}`);
  process.exit(1);
});
