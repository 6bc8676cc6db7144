import { describe, expect, it } from 'vitest';
import { growableArray, growableBytes, grown } from '../../src/flatten/growable-array.js';

describe('growable arrays', () => {
  it('grow in place: the same array, old values kept, new ones filled, no copy left behind', () => {
    const array = growableArray(Int16Array, 4, -1);
    array[0] = 7;
    array[3] = 9;
    const before = growableBytes();
    const bigger = grown(array, 10, -1);
    expect(bigger).toBe(array);
    expect([...bigger]).toEqual([7, -1, -1, 9, -1, -1, -1, -1, -1, -1]);
    expect(growableBytes() - before).toBe(12);
  });

  it('fill with zeros when no fill is given, on growth too', () => {
    const array = growableArray(Uint32Array, 2);
    array[1] = 5;
    expect([...grown(array, 4)]).toEqual([0, 5, 0, 0]);
  });

  it('copy an array that cannot grow in place', () => {
    const fixed = Int32Array.of(1, 2);
    const bigger = grown(fixed, 3, 4);
    expect(bigger).not.toBe(fixed);
    expect([...bigger]).toEqual([1, 2, 4]);
  });
});
