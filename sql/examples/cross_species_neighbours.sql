-- The 10 nearest human cells of mouse cell 216 (a beta cell in the demo atlas), grouped by their
-- cell type. knn_cells takes literal arguments (DuckDB table functions cannot be lateral-joined).
SELECT c.cell_type AS human_neighbour_type, count(*) AS neighbours, round(avg(k.distance), 3) AS mean_distance
FROM knn_cells(cell_id := 216, k := 10, species := 'human') k JOIN cell_info c USING (cell_id)
GROUP BY ALL
ORDER BY neighbours DESC;
