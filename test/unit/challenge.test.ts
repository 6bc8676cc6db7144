import { describe, expect, it } from 'vitest';
import { findChallenge, parseChallenges } from '../../src/registry/challenge.js';

describe('parseChallenges', () => {
  it.each([
    [
      'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"',
      [{ scheme: 'bearer', params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/alpine:pull' } }],
    ],
    [
      'Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:o/r:pull,push"',
      [{ scheme: 'bearer', params: { realm: 'https://ghcr.io/token', service: 'ghcr.io', scope: 'repository:o/r:pull,push' } }],
    ],
    ['Basic realm="Registry Realm"', [{ scheme: 'basic', params: { realm: 'Registry Realm' } }]],
    ['basic', [{ scheme: 'basic', params: {} }]],
    [
      'Bearer realm = "a\\"b\\\\c" , error=insufficient_scope',
      [{ scheme: 'bearer', params: { realm: 'a"b\\c', error: 'insufficient_scope' } }],
    ],
    [
      'Bearer realm="https://x/token",scope="repository:a:pull,push", Basic realm="fallback"',
      [
        { scheme: 'bearer', params: { realm: 'https://x/token', scope: 'repository:a:pull,push' } },
        { scheme: 'basic', params: { realm: 'fallback' } },
      ],
    ],
    ['Negotiate abc+/==, Basic realm=r', [{ scheme: 'negotiate', params: {}, token68: 'abc+/==' }, { scheme: 'basic', params: { realm: 'r' } }]],
    ['BEARER REALM="u"', [{ scheme: 'bearer', params: { realm: 'u' } }]],
    ['Bearer realm="unterminated', [{ scheme: 'bearer', params: { realm: 'unterminated' } }]],
    ['', []],
    [' , ,', []],
  ])('parses %s', (header, expected) => {
    expect(parseChallenges(header)).toEqual(expected);
  });

  it('reads every value of a repeated header', () => {
    const challenges = parseChallenges(['Basic realm="a"', 'Bearer realm="b",service="s"']);
    expect(challenges.map((c) => c.scheme)).toEqual(['basic', 'bearer']);
    expect(findChallenge(challenges, 'Bearer')?.params['service']).toBe('s');
    expect(findChallenge(challenges, 'digest')).toBeUndefined();
    expect(parseChallenges(undefined)).toEqual([]);
  });
});
