import { readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readCheckpointState, auditPaths } from '../../src/audit/store.js';
import { errorCode, manifest, tempDir } from '../helpers.js';
import { encodeRecord, fromExported, scanRecord, toExported } from '../../src/audit/record.js';
import { canonicalize } from '../../src/manifest/canonical.js';
import { cli } from './harness.js';
import { runAuditTail } from '../../src/cli/audit.js';

async function setup(count = 300) {
  const home = tempDir();
  const cordonHome = join(home, 'cordon');
  const run = (args: string[]) => cli(args, { home, cordonHome });
  expect((await run(['init'])).code).toBe(0);
  expect((await run(['audit', 'emit-test', '--count', String(count)])).code).toBe(0);
  return { home, cordonHome, run, stateDir: join(cordonHome, 'state') };
}

/** The segment file of a one-segment log. */
const segmentOf = (stateDir: string): string =>
  join(stateDir, 'audit', 'segments', readdirSync(join(stateDir, 'audit', 'segments'))[0]!);

describe('cordon audit', () => {
  it('verify: a log cut back to an earlier signed checkpoint, its checkpoint.json restored, is not reported as proven; with a witness it is detected', async () => {
    // Without a witness: what anyone who can write the state directory can do, no key needed.
    const a = await setup(50);
    const p = auditPaths(a.stateDir);
    const seg = segmentOf(a.stateDir);
    const earlyLog = readFileSync(seg);
    const earlyState = readFileSync(p.checkpoint);
    expect((await a.run(['audit', 'emit-test', '--count', '50'])).code).toBe(0);
    expect(readCheckpointState(p)!.size).toBe(101);
    writeFileSync(seg, earlyLog);
    writeFileSync(p.checkpoint, earlyState);
    const cut = await a.run(['audit', 'verify']);
    expect(cut.code, cut.stdout).toBe(4);
    expect(cut.stdout).toMatch(/^records 1\.\.51: chain intact/m);
    expect(cut.stdout).toMatch(/completeness: NOT PROVEN \(no witness/);
    expect(cut.stdout).toMatch(/INTACT, COMPLETENESS NOT PROVEN/);
    expect(cut.stdout).not.toMatch(/^ok:/m);

    // With a witness configured, the writer appends each checkpoint to it; the same cut is found.
    const b = await setup(1);
    const witness = join(b.home, 'witness.ndjson');
    // audit.json is read when the endpoint service starts: each change stops it (the next
    // client starts it again).
    const config = async (extra: object): Promise<void> => {
      writeFileSync(
        join(b.cordonHome, 'policy', 'audit.json'),
        JSON.stringify({ apiVersion: 'cordon.dev/v1', kind: 'AuditConfig', ...extra }),
      );
      await b.run(['daemon', 'stop']);
    };
    await config({ witness: { path: witness } });
    expect((await b.run(['audit', 'emit-test', '--count', '50'])).code).toBe(0);
    const bp = auditPaths(b.stateDir);
    const bseg = segmentOf(b.stateDir);
    const before = { log: readFileSync(bseg), state: readFileSync(bp.checkpoint) };
    expect((await b.run(['audit', 'emit-test', '--count', '50'])).code).toBe(0);
    const good = await b.run(['audit', 'verify']);
    expect(good.code, good.stdout).toBe(0);
    expect(good.stdout).toMatch(
      new RegExp(`completeness vs witness ${witness}: proven through record 103`),
    );
    expect(good.stdout).toMatch(/^ok: /m);
    expect(readFileSync(witness, 'utf8').trim().split('\n')).toHaveLength(2);
    expect((await b.run(['audit', 'status'])).stdout).toMatch(
      /^witness: .*: latest checkpoint over 103 records$/m,
    );
    // The cut is made with the service stopped (it holds the log open while it runs).
    await b.run(['daemon', 'stop']);
    writeFileSync(bseg, before.log);
    writeFileSync(bp.checkpoint, before.state);
    const caught = await b.run(['audit', 'verify']);
    expect(caught.code, caught.stdout).toBe(1);
    expect(caught.stdout).toMatch(
      /DAMAGE \(truncated\) at record 54: the log ends at record 53 but the witness holds a checkpoint signed over 103 records/,
    );
    // The writer refuses to carry on from the cut log.
    const writer = await b.run(['audit', 'emit-test', '--count', '1']);
    expect(writer.code).toBe(1);
    expect(writer.stderr).toMatch(/AUDIT_LOG_CORRUPT[\s\S]*the witness .* holds checkpoint 103/);
    // Going on without the witness, then putting it back: a re-signed fork of the log is found
    // too, because the witness's checkpoint is not in it.
    await config({});
    expect((await b.run(['audit', 'emit-test', '--count', '80'])).code).toBe(0);
    await config({ witness: { path: witness } });
    const forked = await b.run(['audit', 'verify']);
    expect(forked.code, forked.stdout).toBe(1);
    expect(forked.stdout).toMatch(
      /DAMAGE \(modified\): the witness holds a checkpoint signed over records 1\.\.103 that is not in the log/,
    );
    // --witness names the witness on the command line (e.g. a copy fetched from elsewhere).
    await config({});
    const named = await b.run(['audit', 'verify', '--witness', witness]);
    expect(named.code).toBe(1);
    // A witness the writer cannot append to does not stop the log; status says it lags.
    await config({ witness: { path: join(b.home, 'no-such-dir', 'witness.ndjson') } });
    expect((await b.run(['audit', 'emit-test', '--count', '1'])).code).toBe(0);
    expect((await b.run(['audit', 'status'])).stdout).toMatch(
      /^witness: .*no-such-dir.*: no checkpoint yet — BEHIND the log's latest/m,
    );
  });

  it('verify: exit 4 on an intact log without a witness, 1 with the kind of damage, --json for machines', async () => {
    const { run, stateDir } = await setup();
    const ok = await run(['audit', 'verify', '--json']);
    expect(ok.code).toBe(4);
    expect(ok.json()).toMatchObject({
      ok: false,
      intact: true,
      records: 301,
      provenSize: 300,
      signedThrough: 301,
      completeness: { proven: false, through: 0, witnesses: [] },
    });
    expect((await run(['audit', 'verify'])).stdout).not.toMatch(
      /not yet under a signed checkpoint/,
    );
    const seg = join(
      stateDir,
      'audit',
      'segments',
      readdirSync(join(stateDir, 'audit', 'segments'))[0]!,
    );
    const lines = readFileSync(seg, 'utf8').split('\n');
    lines.splice(100, 1);
    writeFileSync(seg, lines.join('\n'));
    const bad = await run(['audit', 'verify']);
    expect(bad.code).toBe(1);
    expect((await run(['audit', 'verify', '--json'])).json()).toMatchObject({
      ok: false,
      code: 'AUDIT_DAMAGED',
    });
    expect(bad.stdout).toMatch(/DAMAGE \(deleted\) at record 102: record 101 is missing/);
  });

  it('verify --checkpoint: a shipped note catches a truncated log; a note from another device is refused', async () => {
    const a = await setup(50);
    const note = join(a.home, 'shipped.note');
    writeFileSync(note, readCheckpointState(auditPaths(a.stateDir))!.note);
    const shipped = await a.run(['audit', 'verify', '--checkpoint', note]);
    expect(shipped.code).toBe(0);
    expect(shipped.stdout).toMatch(
      new RegExp(`completeness vs witness ${note}: proven through record 50`),
    );
    const exported = (
      await a.run(['audit', 'export', '--format', 'ocsf-ndjson', '--since', '51', '--until', '51'])
    ).stdout;
    expect(exported).toContain('"activity_name":"Checkpoint"');
    const asEvent = join(a.home, 'checkpoint-event.json');
    writeFileSync(asEvent, exported);
    const seg = join(
      a.stateDir,
      'audit',
      'segments',
      readdirSync(join(a.stateDir, 'audit', 'segments'))[0]!,
    );
    writeFileSync(seg, readFileSync(seg, 'utf8').split('\n').slice(0, 20).join('\n') + '\n');
    const r = await a.run(['audit', 'verify', '--checkpoint', note]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/DAMAGE \(truncated\)/);
    // The checkpoint event as the SIEM holds it works as well as the bare note.
    const viaEvent = await a.run(['audit', 'verify', '--checkpoint', asEvent]);
    expect(viaEvent.stdout).toMatch(/DAMAGE \(truncated\)/);
    writeFileSync(asEvent, '{"unmapped":{}}');
    const noCheckpoint = await a.run(['audit', 'verify', '--checkpoint', asEvent]);
    expect(noCheckpoint.stderr).toMatch(/AUDIT_CHECKPOINT_INVALID/);
    const b = await setup(10);
    const foreign = await b.run(['audit', 'verify', '--checkpoint', note]);
    expect(foreign.code).toBe(1);
    expect(foreign.stdout).toMatch(/checkpoint-invalid/);
  });

  it('export keeps seq, prev and hash, and the copy verifies with the device key given by --key', async () => {
    const { run, home } = await setup(120);
    const out = join(home, 'export.ndjson');
    expect((await run(['audit', 'export', '--format', 'ocsf-ndjson', '--out', out])).code).toBe(0);
    const first = JSON.parse(readFileSync(out, 'utf8').split('\n')[0]!) as Record<
      string,
      { sequence?: number; cordon_audit?: unknown }
    >;
    expect(first['metadata']!.sequence).toBe(1);
    expect(first['unmapped']!.cordon_audit).toMatchObject({ prev: '0'.repeat(64) });
    const status = (await run(['audit', 'status', '--json'])).json() as { verifierKey: string };
    const v = await cli(['audit', 'verify', '--exported', out, '--key', status.verifierKey], {
      home,
      cordonHome: join(home, 'elsewhere'),
    });
    expect(v.code, v.stdout + v.stderr).toBe(0);
    expect(v.stdout).toMatch(/ok: .*121 record\(s\)/);
    expect(v.stdout).toMatch(/authenticity: proven \(every record is under a signed checkpoint\)/);
    // A SIEM returns records in any order and some twice (at-least-once delivery): still verifies.
    const lines = readFileSync(out, 'utf8').trim().split('\n');
    const shuffled = [...lines, lines[5]!, lines[77]!].sort(() => Math.random() - 0.5);
    writeFileSync(out, shuffled.join('\n') + '\n');
    const unordered = await run([
      'audit',
      'verify',
      '--exported',
      out,
      '--key',
      status.verifierKey,
    ]);
    expect(unordered.code, unordered.stdout).toBe(0);
    expect(unordered.stdout).toMatch(/2 duplicate deliveries skipped/);
    // ... but not with a record missing.
    const without50 = shuffled.filter((l) => !/"sequence":50[,}]/.test(l));
    expect(without50.length).toBe(shuffled.length - 1);
    writeFileSync(out, without50.join('\n') + '\n');
    const gap = await run(['audit', 'verify', '--exported', out, '--key', status.verifierKey]);
    expect(gap.code).toBe(1);
    expect(gap.stdout).toMatch(/DAMAGE \(deleted\).*record 50 is missing/);
    writeFileSync(out, lines.join('\n') + '\n');
    // A SIEM-side edit is caught.
    const text = readFileSync(out, 'utf8').replace(
      '"disposition":"Blocked"',
      '"disposition":"Allowed"',
    );
    writeFileSync(out, text);
    const bad = await run(['audit', 'verify', '--exported', out]);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toMatch(/DAMAGE \(modified\)/);
    // --since / --until by seq.
    const part = await run([
      'audit',
      'export',
      '--format',
      'ocsf-ndjson',
      '--since',
      '100',
      '--until',
      '104',
    ]);
    expect(
      part.stdout
        .trim()
        .split('\n')
        .map((l) => (JSON.parse(l) as { metadata: { sequence: number } }).metadata.sequence),
    ).toEqual([100, 101, 102, 103, 104]);
    expect((await run(['audit', 'export', '--format', 'csv'])).code).toBe(2);
    expect(
      (await run(['audit', 'export', '--format', 'ocsf-ndjson', '--since', 'yesterday'])).code,
    ).toBe(2);
  });

  it('verify --exported: a partial copy is proven only by a signed checkpoint and RFC 9162 proofs; 50 events rewritten to Allowed with the chain recomputed are caught', async () => {
    const { run, home } = await setup(300);
    // A later checkpoint too, so the proof also carries a consistency proof to it.
    expect((await run(['audit', 'emit-test', '--count', '100'])).code).toBe(0);
    const status = (await run(['audit', 'status', '--json'])).json() as { verifierKey: string };
    const key = status.verifierKey;
    const win = join(home, 'window.ndjson');
    const exp = await run([
      'audit',
      'export',
      '--format',
      'ocsf-ndjson',
      '--since',
      '100',
      '--until',
      '250',
      '--proofs',
      '--out',
      win,
    ]);
    expect(exp.code, exp.stderr).toBe(0);
    expect(exp.stderr).toMatch(/exported 151 record\(s\) with a proof/);
    const lines = readFileSync(win, 'utf8').trim().split('\n');
    const proofLine = lines.pop()!;
    expect(proofLine).toMatch(/^\{"cordon_audit_proof":/);
    expect(lines).toHaveLength(151);

    // Genuine, with its proof: proven (verified elsewhere, with the verifier key only).
    const elsewhere = { home, cordonHome: join(home, 'elsewhere') };
    const good = await cli(['audit', 'verify', '--exported', win, '--key', key], elsewhere);
    expect(good.code, good.stdout + good.stderr).toBe(0);
    expect(good.stdout).toMatch(
      /authenticity: proven \(record 250 is in the tree signed by the checkpoint over 300 records \(RFC 9162 inclusion proof\), which is consistent with the latest checkpoint over 401\)/,
    );
    // Genuine, without its proof: the chain alone proves nothing; unproven, exit 4.
    const bare = join(home, 'bare.ndjson');
    writeFileSync(bare, lines.join('\n') + '\n');
    const unproven = await cli(['audit', 'verify', '--exported', bare, '--key', key], elsewhere);
    expect(unproven.code, unproven.stdout).toBe(4);
    expect(unproven.stdout).toMatch(
      /authenticity: NOT PROVEN \(no record of the copy is under a signed checkpoint/,
    );
    // The proof kept apart from the copy (a SIEM search plus the device's proof) works too.
    const proofOnly = join(home, 'window.proof');
    writeFileSync(proofOnly, proofLine + '\n');
    const apart = await cli(
      ['audit', 'verify', '--exported', bare, '--proof', proofOnly, '--key', key],
      elsewhere,
    );
    expect(apart.code, apart.stdout).toBe(0);

    // The attack: 50 Blocked events turned into Allowed, every hash and prev recomputed.
    let prev = (fromExported(JSON.parse(lines[0]!)) as { prev: string }).prev;
    let rewritten = 0;
    const forged = lines.map((l) => {
      const r = fromExported(JSON.parse(l));
      let event = r.event;
      if (rewritten < 50 && event['disposition'] === 'Blocked') {
        event = {
          ...event,
          disposition: 'Allowed',
          disposition_id: 1,
          action_id: 1,
          action: 'Allowed',
        };
        rewritten++;
      }
      const { hash } = encodeRecord(r.seq, r.time, prev, canonicalize(event));
      const out = JSON.stringify(toExported({ seq: r.seq, time: r.time, prev, hash, event }));
      prev = hash;
      return out;
    });
    expect(rewritten).toBe(50);
    const forgedFile = join(home, 'forged.ndjson');
    // Without a proof the forgery is a well-formed chain: not ok (unproven, exit 4).
    writeFileSync(forgedFile, forged.join('\n') + '\n');
    const noProof = await cli(
      ['audit', 'verify', '--exported', forgedFile, '--key', key],
      elsewhere,
    );
    expect(noProof.code, noProof.stdout).toBe(4);
    expect(noProof.stdout).not.toMatch(/^ok:/m);
    // With the genuine proof: damage, exit 1.
    writeFileSync(forgedFile, [...forged, proofLine].join('\n') + '\n');
    const withProof = await cli(
      ['audit', 'verify', '--exported', forgedFile, '--key', key],
      elsewhere,
    );
    expect(withProof.code, withProof.stdout).toBe(1);
    expect(withProof.stdout).toMatch(
      /DAMAGE \(modified\) at record 250: record 250 in the copy is not the record the proof is for/,
    );
    // A forged proof (the attacker's own inclusion path) fails the signed root.
    const proof = JSON.parse(proofLine) as {
      cordon_audit_proof: { last: { hash: string }; inclusion: string[] };
    };
    proof.cordon_audit_proof.last.hash = (
      JSON.parse(forged.at(-1)!) as { unmapped: { cordon_audit: { hash: string } } }
    ).unmapped.cordon_audit.hash;
    writeFileSync(forgedFile, [...forged, JSON.stringify(proof)].join('\n') + '\n');
    const forgedProof = await cli(
      ['audit', 'verify', '--exported', forgedFile, '--key', key],
      elsewhere,
    );
    expect(forgedProof.code, forgedProof.stdout).toBe(1);
    expect(forgedProof.stdout).toMatch(
      /record 250 is not in the tree the checkpoint over 300 records signs/,
    );

    // A window up to the log's end: its last record carries the latest checkpoint, which counts
    // as signed, as in the log itself.
    const toEnd = join(home, 'to-end.ndjson');
    const end = await run([
      'audit',
      'export',
      '--format',
      'ocsf-ndjson',
      '--since',
      '390',
      '--proofs',
      '--out',
      toEnd,
    ]);
    expect(end.code, end.stderr).toBe(0);
    const endCheck = await cli(['audit', 'verify', '--exported', toEnd, '--key', key], elsewhere);
    expect(endCheck.code, endCheck.stdout).toBe(0);
    expect(endCheck.stdout).toMatch(/^records 390\.\.402: chain intact/m);
  });

  it('tail filters with --where and prints exported events with --json and --ndjson', async () => {
    const { run } = await setup(200);
    const r = await run(['audit', 'tail', '-n', '3', '--where', 'class_uid=4002', '--json']);
    expect(r.code).toBe(0);
    const { ok, events } = r.json() as { ok: boolean; events: { class_uid: number }[] };
    expect(ok).toBe(true);
    expect(events).toHaveLength(3);
    expect(events.every((e) => e.class_uid === 4002)).toBe(true);
    const nd = await run(['audit', 'tail', '-n', '3', '--where', 'class_uid=4002', '--ndjson']);
    expect(
      nd.stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as unknown),
    ).toEqual(events);
    // One object cannot grow: following needs the line format.
    expect((await run(['audit', 'tail', '-f', '--json'])).code).toBe(2);
    const human = await run(['audit', 'tail', '-n', '2', '--where', 'disposition=Blocked']);
    expect(human.stdout.trim().split('\n')).toHaveLength(2);
    expect(human.stdout).toMatch(/Blocked/);
    expect((await run(['audit', 'tail', '--where', 'nonsense'])).code).toBe(2);
  });

  it('status, emit-test and check --audit', async () => {
    const { run, home } = await setup(10);
    const s = await run(['audit', 'status']);
    expect(s.stdout).toMatch(/records: 11/);
    expect(s.stdout).toMatch(/verifier key: cordon\.audit\//);
    expect((await run(['audit', 'emit-test', '--count', '0'])).code).toBe(2);
    const m = join(home, 'm.json');
    writeFileSync(m, JSON.stringify(manifest({ readPaths: ['/srv/**'] })));
    const d = await run(['check', '--manifest', m, '--audit', '--lexical', 'read', '/etc/shadow']);
    expect(d.code).toBe(1);
    expect(d.stderr).toMatch(/audit: record 12/);
    const t = await run(['audit', 'tail', '-n', '2', '--ndjson']);
    const [decision] = t.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(decision).toMatchObject({
      class_uid: 1001,
      activity_id: 2,
      disposition_id: 2,
      file: { path: '/etc/shadow' },
    });
    const fresh = tempDir();
    const none = await cli(['audit', 'status'], { home: fresh, cordonHome: join(fresh, 'c') });
    expect(none.code).toBe(3);
    expect(none.stderr).toMatch(/AUDIT_LOG_MISSING/);
  });

  it('errors name what is missing or damaged', async () => {
    const { run, cordonHome, stateDir } = await setup(5);
    const ship = await run(['audit', 'ship', '--once']);
    expect(ship.code).toBe(3);
    expect(ship.stderr).toMatch(/AUDIT_NO_SINKS/);
    rmSync(join(cordonHome, 'policy', 'device.pub'));
    const nokey = await run(['audit', 'verify']);
    expect(nokey.code).toBe(3);
    expect(nokey.stderr).toMatch(/AUDIT_NO_VERIFIER[\s\S]*fix: pass --key/);
    writeFileSync(join(stateDir, 'audit', 'index.json'), '{"version":1,"segments":[]}');
    const corrupt = await run(['audit', 'status']);
    expect(corrupt.code).toBe(1);
    expect(corrupt.stderr).toMatch(/AUDIT_STATE_CORRUPT[\s\S]*index\.json/);
    expect(errorCode(() => scanRecord(Buffer.from('{"not":"a record"}')))).toBe(
      'AUDIT_RECORD_MALFORMED',
    );
  });

  it('tail -f prints records appended while it runs; export --since takes a time or a duration', async () => {
    const { home, cordonHome } = await setup(5);
    let out = '';
    const io = {
      stdout: (t: string) => {
        out += t;
      },
      stderr: () => undefined,
      env: { CORDON_HOME: cordonHome },
      now: () => new Date(),
      home,
    };
    const stop = new AbortController();
    const following = runAuditTail(io, { follow: true, lines: '0' }, stop.signal);
    await new Promise((r) => setTimeout(r, 300));
    expect(out).toBe('');
    await cli(['audit', 'emit-test', '--count', '3'], { home, cordonHome });
    const deadline = Date.now() + 10_000;
    while (out.trim().split('\n').length < 4 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
    }
    stop.abort();
    expect(await following).toBe(0);
    // Three synthetic events and the checkpoint the writer signed when it closed.
    expect(
      out
        .trim()
        .split('\n')
        .map((l) => Number(l.split(' ')[0])),
    ).toEqual([7, 8, 9, 10]);
    const later = new Date(Date.now() + 60_000).toISOString();
    const none = await cli(['audit', 'export', '--format', 'ocsf-ndjson', '--since', later], {
      home,
      cordonHome,
    });
    expect(none.stdout).toBe('');
    const recent = await cli(['audit', 'export', '--format', 'ocsf-ndjson', '--since', '1h'], {
      home,
      cordonHome,
    });
    expect(recent.stdout.trim().split('\n')).toHaveLength(10);
  });
});
