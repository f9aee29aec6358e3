import { csvField } from '@app/observability';
import { usageCsv } from './usage-csv';

describe('usage CSV', () => {
  it('quotes commas, quotes and line breaks; defuses formulas', () => {
    expect(csvField('plain')).toBe('plain');
    expect(csvField('a,b')).toBe('"a,b"');
    expect(csvField('say "hi"')).toBe('"say ""hi"""');
    expect(csvField('=HYPERLINK("x")')).toBe(`"'=HYPERLINK(""x"")"`);
    expect(csvField('-1+1')).toBe("'-1+1");
    expect(csvField(null)).toBe('');
    expect(csvField(0.000123)).toBe('0.000123');
  });

  it('has the group columns, then the figures', () => {
    const figures = {
      requests: 2,
      prompt_tokens: 10,
      completion_tokens: 5,
      total_tokens: 15,
      cache_write_tokens: 0,
      cache_read_tokens: 0,
      cost_usd: 0.01,
    };
    const csv = usageCsv({
      object: 'list',
      group_by: 'key',
      from: '',
      to: '',
      data: [{ api_key_id: 'k1', key_name: 'a, b', ...figures }],
      totals: figures,
    });
    expect(csv).toBe(
      'api_key_id,key_name,requests,prompt_tokens,completion_tokens,total_tokens,cache_write_tokens,cache_read_tokens,cost_usd\r\n' +
        'k1,"a, b",2,10,5,15,0,0,0.01\r\n',
    );
  });

  it('split by model: the day, the series, other, then the figures', () => {
    const f = {
      requests: 1,
      prompt_tokens: 1,
      completion_tokens: 1,
      total_tokens: 2,
      cache_write_tokens: 0,
      cache_read_tokens: 0,
      cost_usd: 0,
    };
    const csv = usageCsv({
      object: 'list',
      group_by: 'day',
      split_by: 'model',
      from: '',
      to: '',
      data: [
        { day: '2026-11-29', model: 'gpt-a', ...f },
        { day: '2026-11-29', other: true, ...f },
      ],
      totals: f,
    });
    expect(csv.split('\r\n')).toEqual([
      'day,model,other,requests,prompt_tokens,completion_tokens,total_tokens,cache_write_tokens,cache_read_tokens,cost_usd',
      '2026-11-29,gpt-a,,1,1,1,2,0,0,0',
      '2026-11-29,,true,1,1,1,2,0,0,0',
      '',
    ]);
  });
});
