-- Cells per species and cell type, most common first.
SELECT species, cell_type, count(*) AS cells
FROM cell_info
GROUP BY ALL
ORDER BY species, cells DESC, cell_type;
