import { Slots } from './slots';

describe('Slots', () => {
  it('holds what was added until its slot is removed, and reuses freed slots', () => {
    const s = new Slots<string>();
    const a = s.add('a');
    const b = s.add('b');
    const c = s.add('c');
    expect(s.size).toBe(3);
    s.remove(b);
    expect([...s]).toEqual(['a', 'c']);
    expect(s.size).toBe(2);
    // the freed slot is taken again: the array does not grow while fewer are held
    expect(s.add('d')).toBe(b);
    expect([...s]).toEqual(['a', 'd', 'c']);
    s.remove(a);
    s.remove(a); // a second remove of the same slot does nothing
    expect(s.size).toBe(2);
    s.remove(c);
    s.remove(b);
    expect(s.size).toBe(0);
    expect([...s]).toEqual([]);
    expect([s.add('e'), s.add('f'), s.add('g'), s.add('h')].sort()).toEqual([0, 1, 2, 3]);
  });
});
