import { describe, expect, it } from 'vitest';
import { PlatformNotFoundError, UsageError } from '../../src/errors.js';
import {
  defaultPlatform,
  formatPlatform,
  hostPlatform,
  parsePlatform,
  platformMatches,
  selectPlatform,
  type PlatformCandidate,
} from '../../src/image/platform.js';

const entry = (os: string, architecture: string, variant?: string, digest = `${os}/${architecture}/${variant ?? ''}`): PlatformCandidate & { digest: string } => ({
  digest,
  platform: { os, architecture, ...(variant === undefined ? {} : { variant }) },
});

describe('parsePlatform', () => {
  it.each([
    ['linux/amd64', 'linux/amd64'],
    ['linux/x86_64', 'linux/amd64'],
    ['linux/aarch64', 'linux/arm64'],
    ['linux/arm64/8', 'linux/arm64/v8'],
    ['linux/arm/7', 'linux/arm/v7'],
    ['linux/armhf', 'linux/arm/v7'],
    ['Linux/AMD64', 'linux/amd64'],
    ['windows/amd64', 'windows/amd64'],
  ])('reads %s as %s', (text, expected) => {
    expect(formatPlatform(parsePlatform(text))).toBe(expected);
  });

  it.each(['linux', 'linux/', '/amd64', 'linux/amd64/v8/x', 'linux amd64'])('refuses %s', (text) => {
    expect(() => parsePlatform(text)).toThrow(UsageError);
  });
});

describe('host platform', () => {
  it('maps node architectures to OCI ones, always for linux', () => {
    expect(hostPlatform('x64')).toEqual({ os: 'linux', architecture: 'amd64' });
    expect(hostPlatform('arm64')).toEqual({ os: 'linux', architecture: 'arm64', variant: 'v8' });
    expect(hostPlatform('arm', '6')).toEqual({ os: 'linux', architecture: 'arm', variant: 'v6' });
    expect(hostPlatform('ia32')).toEqual({ os: 'linux', architecture: '386' });
    expect(hostPlatform('s390x')).toEqual({ os: 'linux', architecture: 's390x' });
    expect(defaultPlatform().os).toBe('linux');
  });
});

describe('platform matching', () => {
  it('treats arm64 without variant as v8 on either side', () => {
    expect(platformMatches(parsePlatform('linux/arm64'), parsePlatform('linux/arm64/v8'))).toBe(true);
    expect(platformMatches(parsePlatform('linux/arm64/v8'), parsePlatform('linux/arm64'))).toBe(true);
    expect(platformMatches(parsePlatform('linux/arm64/v8'), parsePlatform('linux/arm64/v9'))).toBe(false);
  });

  it('lets an entry without variant match any wanted variant', () => {
    expect(platformMatches(parsePlatform('linux/arm/v7'), parsePlatform('linux/arm'))).toBe(true);
  });

  it('never matches across os or architecture', () => {
    expect(platformMatches(parsePlatform('linux/amd64'), parsePlatform('windows/amd64'))).toBe(false);
    expect(platformMatches(parsePlatform('linux/amd64'), parsePlatform('linux/386'))).toBe(false);
  });
});

describe('selectPlatform', () => {
  const index = [
    entry('linux', 'amd64'),
    entry('linux', 'arm', 'v6'),
    entry('linux', 'arm', 'v7'),
    entry('linux', 'arm64', 'v8'),
    { digest: 'attestation', platform: { os: 'unknown', architecture: 'unknown' } },
    { digest: 'no-platform' },
  ];

  it('picks the exact variant over others', () => {
    expect(selectPlatform(index, parsePlatform('linux/arm/v7')).entry.digest).toBe('linux/arm/v7');
    expect(selectPlatform(index, parsePlatform('linux/arm/v6')).entry.digest).toBe('linux/arm/v6');
  });

  it('falls back to an older arm variant', () => {
    expect(selectPlatform([entry('linux', 'arm', 'v5'), entry('linux', 'arm', 'v6')], parsePlatform('linux/arm/v7')).entry.digest).toBe('linux/arm/v6');
  });

  it('prefers an exact variant to a variant-less entry, and a variant-less entry to a guess', () => {
    const entries = [entry('linux', 'arm'), entry('linux', 'arm', 'v7')];
    expect(selectPlatform(entries, parsePlatform('linux/arm/v7')).entry.digest).toBe('linux/arm/v7');
    expect(selectPlatform([entry('linux', 'arm', 'v6'), entry('linux', 'arm')], parsePlatform('linux/arm/v7')).entry.digest).toBe('linux/arm/');
  });

  it('keeps index order on ties', () => {
    const entries = [entry('linux', 'amd64', undefined, 'first'), entry('linux', 'amd64', undefined, 'second')];
    expect(selectPlatform(entries, parsePlatform('linux/amd64')).entry.digest).toBe('first');
  });

  it('skips attestations and lists what is available when nothing matches', () => {
    let error: unknown;
    try {
      selectPlatform(index, parsePlatform('linux/s390x'));
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(PlatformNotFoundError);
    expect((error as PlatformNotFoundError).wanted).toBe('linux/s390x');
    expect((error as PlatformNotFoundError).available).toEqual(['linux/amd64', 'linux/arm/v6', 'linux/arm/v7', 'linux/arm64/v8']);
    expect(() => selectPlatform([index[4] ?? entry('x', 'y')], parsePlatform('unknown/unknown'))).toThrow(PlatformNotFoundError);
  });
});
