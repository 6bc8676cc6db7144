import { describe, expect, it } from 'vitest';
import { InvalidReferenceError } from '../../src/errors.js';
import {
  manifestReference,
  parseReference,
  registryApiHost,
  withDigest,
} from '../../src/reference/index.js';

const D = `sha256:${'a'.repeat(64)}`;

interface Valid {
  input: string;
  registry: string;
  repository: string;
  tag?: string;
  digest?: string;
  text: string;
}

const valid: Valid[] = [
  { input: 'alpine', registry: 'docker.io', repository: 'library/alpine', tag: 'latest', text: 'docker.io/library/alpine:latest' },
  { input: 'alpine:3.20', registry: 'docker.io', repository: 'library/alpine', tag: '3.20', text: 'docker.io/library/alpine:3.20' },
  { input: 'library/alpine', registry: 'docker.io', repository: 'library/alpine', tag: 'latest', text: 'docker.io/library/alpine:latest' },
  { input: 'docker.io/library/alpine', registry: 'docker.io', repository: 'library/alpine', tag: 'latest', text: 'docker.io/library/alpine:latest' },
  { input: 'docker.io/alpine', registry: 'docker.io', repository: 'library/alpine', tag: 'latest', text: 'docker.io/library/alpine:latest' },
  { input: 'index.docker.io/user/app:1', registry: 'docker.io', repository: 'user/app', tag: '1', text: 'docker.io/user/app:1' },
  { input: 'ghcr.io/o/r:t', registry: 'ghcr.io', repository: 'o/r', tag: 't', text: 'ghcr.io/o/r:t' },
  { input: 'host:5000/a/b/c:t', registry: 'host:5000', repository: 'a/b/c', tag: 't', text: 'host:5000/a/b/c:t' },
  { input: `name@${D}`, registry: 'docker.io', repository: 'library/name', digest: D, text: `docker.io/library/name@${D}` },
  { input: `name:tag@${D}`, registry: 'docker.io', repository: 'library/name', tag: 'tag', digest: D, text: `docker.io/library/name:tag@${D}` },
  { input: 'localhost/x', registry: 'localhost', repository: 'x', tag: 'latest', text: 'localhost/x:latest' },
  { input: 'localhost:5000/x', registry: 'localhost:5000', repository: 'x', tag: 'latest', text: 'localhost:5000/x:latest' },
  { input: '[::1]:5000/x:y', registry: '[::1]:5000', repository: 'x', tag: 'y', text: '[::1]:5000/x:y' },
  { input: '[fe80::1]/x', registry: '[fe80::1]', repository: 'x', tag: 'latest', text: '[fe80::1]/x:latest' },
  { input: 'Registry.Example/a', registry: 'Registry.Example', repository: 'a', tag: 'latest', text: 'Registry.Example/a:latest' },
  { input: 'a.b-c/d__e---f/g', registry: 'a.b-c', repository: 'd__e---f/g', tag: 'latest', text: 'a.b-c/d__e---f/g:latest' },
  { input: 'user/a.b_c__d-e--f:V1.0-rc_2', registry: 'docker.io', repository: 'user/a.b_c__d-e--f', tag: 'V1.0-rc_2', text: 'docker.io/user/a.b_c__d-e--f:V1.0-rc_2' },
  { input: `example.com/x@sha512:${'b'.repeat(128)}`, registry: 'example.com', repository: 'x', digest: `sha512:${'b'.repeat(128)}`, text: `example.com/x@sha512:${'b'.repeat(128)}` },
  { input: `x:${'t'.repeat(128)}`, registry: 'docker.io', repository: 'library/x', tag: 't'.repeat(128), text: `docker.io/library/x:${'t'.repeat(128)}` },
];

const invalid: Array<{ input: string; reason: RegExp }> = [
  { input: '', reason: /empty/ },
  { input: 'Alpine', reason: /lowercase/ },
  { input: 'library/Alpine', reason: /lowercase/ },
  { input: ':tag', reason: /missing repository/ },
  { input: `@${D}`, reason: /missing repository/ },
  { input: 'a//b', reason: /empty path component/ },
  { input: 'a/b/', reason: /empty path component/ },
  { input: 'alpine-', reason: /invalid path component/ },
  { input: '-alpine', reason: /invalid path component/ },
  { input: 'a..b', reason: /invalid path component/ },
  { input: 'a___b', reason: /invalid path component/ },
  { input: 'alpine:', reason: /invalid tag/ },
  { input: 'alpine:-x', reason: /invalid tag/ },
  { input: `alpine:${'t'.repeat(129)}`, reason: /invalid tag/ },
  { input: 'alpine@sha256:abc', reason: /invalid digest/ },
  { input: `alpine@sha256:${'A'.repeat(64)}`, reason: /lowercase hex/ },
  { input: `alpine@sha256:${'a'.repeat(63)}0a`, reason: /64 lowercase hex/ },
  { input: `alpine@md5:${'a'.repeat(32)}`, reason: /unsupported digest algorithm/ },
  { input: `alpine@${D}@${D}`, reason: /invalid digest/ },
  { input: 'exa_mple.com/x', reason: /invalid registry host/ },
  { input: '-bad.host/x', reason: /invalid registry host/ },
  { input: 'host:port/x', reason: /invalid registry host/ },
  { input: ' alpine', reason: /whitespace/ },
  { input: 'a'.repeat(64), reason: /hexadecimal/ },
  { input: `example.com/${'a'.repeat(250)}`, reason: /longer than 255/ },
];

describe('parseReference', () => {
  it.each(valid)('parses $input', ({ input, registry, repository, tag, digest, text }) => {
    const ref = parseReference(input);
    expect(ref.registry).toBe(registry);
    expect(ref.repository).toBe(repository);
    expect(ref.tag).toBe(tag);
    expect(ref.digest).toBe(digest);
    expect(ref.toString()).toBe(text);
    expect(String(ref)).toBe(text);
  });

  it.each(invalid)('refuses "$input"', ({ input, reason }) => {
    let error: unknown;
    try {
      parseReference(input);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(InvalidReferenceError);
    expect((error as InvalidReferenceError).message).toMatch(reason);
    expect((error as InvalidReferenceError).reference).toBe(input);
  });

  it('round-trips through toString', () => {
    for (const { input } of valid) {
      const ref = parseReference(input);
      expect(parseReference(ref.toString()).toString()).toBe(ref.toString());
    }
  });

  it('omits the tag key entirely for digest-only references', () => {
    expect('tag' in parseReference(`alpine@${D}`)).toBe(false);
  });

  it('fetches the digest when both tag and digest are given', () => {
    expect(manifestReference(parseReference(`alpine:3@${D}`))).toBe(D);
    expect(manifestReference(parseReference('alpine:3'))).toBe('3');
    expect(manifestReference(withDigest(parseReference('alpine:3'), D))).toBe(D);
  });

  it('maps docker.io to the Docker Hub API host and leaves others alone', () => {
    expect(registryApiHost(parseReference('alpine').registry)).toBe('registry-1.docker.io');
    expect(registryApiHost(parseReference('ghcr.io/a/b').registry)).toBe('ghcr.io');
    expect(registryApiHost(parseReference('localhost:5000/x').registry)).toBe('localhost:5000');
  });
});
