-- The sqlite3 workload of the preload tests (tests/preload/test_programs.py) and of the
-- fragmentation study (bench/fragmentation.py): build, index, group, join, update, delete,
-- JSON, a recursive CTE, vacuum and an integrity check over 30,000 rows.
PRAGMA journal_mode=WAL;
CREATE TABLE t(id INTEGER PRIMARY KEY, grp INTEGER, name TEXT, payload BLOB, score REAL);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 30000)
INSERT INTO t SELECT x, x % 97, 'name-' || x || '-' || hex(x * 7919),
                     zeroblob(x % 700), (x * 37 % 1000) / 7.0 FROM c;
CREATE INDEX t_grp ON t(grp, score);
CREATE TABLE u AS SELECT grp, count(*) AS n, sum(score) AS s, group_concat(id, ',') AS ids
                  FROM t GROUP BY grp;
SELECT grp, n, round(s, 3), length(ids) FROM u ORDER BY grp LIMIT 20;
SELECT count(*), sum(length(payload)), max(name) FROM t WHERE score > 50;
SELECT a.grp, count(*) FROM t a JOIN u b ON a.grp = b.grp WHERE a.id % 5 = 0
  GROUP BY a.grp ORDER BY 2 DESC, 1 LIMIT 10;
UPDATE t SET name = upper(name) || substr(name, 1, 10) WHERE id % 3 = 0;
DELETE FROM t WHERE id % 7 = 0;
SELECT count(*), sum(length(name)) FROM t;
SELECT json_group_array(json_object('id', id, 'n', name)) FROM (SELECT * FROM t LIMIT 50);
WITH RECURSIVE f(n, a, b) AS (SELECT 0, 0, 1 UNION ALL SELECT n + 1, b, a + b FROM f WHERE n < 80)
SELECT group_concat(a, ' ') FROM f;
VACUUM;
PRAGMA integrity_check;
SELECT count(*) FROM t;
