/**
 * The flatten's decision logic on its own, without streams or tar bytes (DESIGN.md §2): where
 * an entry lands ({@link Placer}), whether it is written ({@link decide}), what one entry per
 * path learns ({@link DuplicateLedger}), and the output batching ({@link OutputBatch}).
 */
import { describe, expect, it } from 'vitest';
import { decide, type Candidate } from '../../src/flatten/decide.js';
import { LayerState, R_DIR, R_SYMLINK, R_WRITTEN, flagsOf, ordinalOf, packRecord } from '../../src/flatten/layer-state.js';
import { DuplicateLedger } from '../../src/flatten/lessons.js';
import { OutputBatch, OUTPUT_BATCH } from '../../src/flatten/output.js';
import { Placer } from '../../src/flatten/placement.js';
import { Visibility } from '../../src/flatten/visibility.js';
import type { TarEntry, TarHeader } from '../../src/streams/tar/types.js';
import { readTar } from '../../src/streams/tar/reader.js';

function header(name: string, type: TarHeader['type'] = 'file', linkname = ''): TarHeader {
  return {
    name: Buffer.from(name, 'latin1'),
    type,
    mode: 0o644,
    uid: 0,
    gid: 0,
    size: 0,
    mtime: 0,
    linkname: Buffer.from(linkname, 'latin1'),
    uname: Buffer.alloc(0),
    gname: Buffer.alloc(0),
    devmajor: 0,
    devminor: 0,
    pax: [],
  };
}

function entry(ordinal: number, h: TarHeader): TarEntry {
  return { header: h, ordinal } as unknown as TarEntry;
}

function candidate(key: string, layer: number, more: Partial<Candidate> = {}): Candidate {
  const slash = key.lastIndexOf('/');
  return {
    key,
    parent: slash < 0 ? '' : key.slice(0, slash),
    base: key === '' ? undefined : key.slice(slash + 1),
    layer,
    isDir: false,
    kept: true,
    superseded: false,
    ...more,
  };
}

describe('decide', () => {
  it('writes a path once, from the highest layer that has it', () => {
    const v = new Visibility();
    expect(decide(v, candidate('etc/passwd', 2))).toEqual({ visible: true, written: true, rewrite: false });
    expect(decide(v, candidate('etc/passwd', 1))).toEqual({ visible: false, written: false, rewrite: false });
  });

  it('hides what a higher layer whited out, and everything below a higher non-directory', () => {
    const v = new Visibility();
    v.recordWhiteout('opt/app', 3);
    expect(decide(v, candidate('opt/app/bin/run', 2)).written).toBe(false);
    expect(decide(v, candidate('lib', 2)).written).toBe(true);
    expect(decide(v, candidate('lib/libc.so', 1)).written).toBe(false);
  });

  it('marks a same-layer duplicate as a rewrite and refuses a directory turned file within a layer', () => {
    const v = new Visibility();
    expect(decide(v, candidate('a', 0)).rewrite).toBe(false);
    expect(decide(v, candidate('a', 0))).toEqual({ visible: true, written: true, rewrite: true });
    decide(v, candidate('d', 0, { isDir: true }));
    expect(() => decide(v, candidate('d', 0))).toThrow(/replaced by a non-directory within the same layer/);
  });

  it('does not write a filtered-out or superseded entry, yet a superseded file still covers lower layers', () => {
    const v = new Visibility();
    expect(decide(v, candidate('x', 1, { kept: false }))).toEqual({ visible: true, written: false, rewrite: false });
    expect(decide(v, candidate('f', 1, { superseded: true }))).toEqual({ visible: true, written: false, rewrite: false });
    expect(decide(v, candidate('f/below', 0)).written).toBe(false);
  });
});

describe('Placer', () => {
  it('resolves a parent through a same-layer symlink, and holds an entry whose parent lower layers decide', () => {
    const placer = new Placer();
    const state = new LayerState(1);
    state.setRecord('usr', packRecord(0, R_DIR | R_WRITTEN));
    state.setRecord('usr/bin', packRecord(1, R_DIR | R_WRITTEN));
    state.setRecord('bin', packRecord(2, R_SYMLINK | R_WRITTEN));
    state.symlinks.set('bin', { kind: 'symlink', target: 'usr/bin' });
    expect(placer.place(entry(3, header('./bin/sh')), state)).toEqual({ key: 'usr/bin/sh', target: undefined, asNamed: false });
    expect(placer.place(entry(4, header('usr/bin/env')), state)).toEqual({ key: 'usr/bin/env', target: undefined, asNamed: true });
    expect(placer.place(entry(5, header('lib/x')), state)).toBeNull();
    expect(placer.place(entry(5, header('lib/x')), new LayerState(0, true))).toEqual({ key: 'lib/x', target: undefined, asNamed: true });
  });

  it('places a hardlink target the same way and counts a name pinned at the root once per entry', () => {
    const placer = new Placer();
    const state = new LayerState(0, true);
    const placed = placer.place(entry(0, header('../../a', 'link', '../b')), state);
    expect(placed).toEqual({ key: 'a', target: 'b', asNamed: false });
    expect(state.pinned).toBe(1);
    expect(state.pinnedExample?.key).toBe('a');
  });
});

describe('LayerState records', () => {
  it('packs ordinal and flags into one number, with room for every flag', () => {
    const value = packRecord(123_456, R_DIR | R_SYMLINK | R_WRITTEN);
    expect(ordinalOf(value)).toBe(123_456);
    expect(flagsOf(value)).toBe(R_DIR | R_SYMLINK | R_WRITTEN);
  });
});

describe('DuplicateLedger', () => {
  it('learns the replaced entry of a path written twice, and a restartable flatten starts discarding', () => {
    const ledger = new DuplicateLedger(undefined, true);
    const state = new LayerState(2);
    state.setRecord('a', packRecord(7, R_WRITTEN));
    ledger.note('a', state, true);
    expect(ledger.discarding).toBe(true);
    expect(state.duplicates).toBe(1);
    const lessons = ledger.lessons(undefined);
    expect([...(lessons.superseded.get(2) ?? [])]).toEqual([7]);
    const next = new DuplicateLedger(lessons, true);
    expect(next.superseded(2, 7)).toBe(true);
    expect(next.superseded(2, 8)).toBe(false);
  });
});

describe('OutputBatch', () => {
  it('gathers headers, small bodies and padding into one chunk that reads back as tar', async () => {
    const out = new OutputBatch();
    const h = { ...header('hello.txt'), size: 5 };
    out.pushHeader(h);
    out.push(Buffer.from('hello'));
    out.pushPadding(5);
    out.push(Buffer.alloc(1024));
    const chunks = [...out.drain()];
    expect(chunks).toHaveLength(1);
    expect(chunks[0]?.length).toBe(512 + 512 + 1024);
    expect([...out.drain()]).toHaveLength(0);
    const names: string[] = [];
    const bodies: string[] = [];
    for await (const e of readTar((async function* () { yield chunks[0] as Buffer; })())) {
      names.push(e.header.name.toString());
      const parts: Buffer[] = [];
      for await (const c of e.body()) parts.push(c);
      bodies.push(Buffer.concat(parts).toString());
    }
    expect(names).toEqual(['hello.txt']);
    expect(bodies).toEqual(['hello']);
  });

  it('says it is full once a batch worth yielding is gathered', () => {
    const out = new OutputBatch();
    expect(out.full).toBe(false);
    out.push(Buffer.alloc(OUTPUT_BATCH));
    expect(out.full).toBe(true);
  });
});
