-- Label transfer mouse <- human, scored against the Cell Ontology class both datasets carry
-- (cell_ontology_class is shared across species; cell_type1 names differ).
WITH latest AS (SELECT max(transfer_id) AS id FROM label_transfers),
predicted AS (
    SELECT t.cell_id, t.predicted_label, t.confidence,
           (SELECT any_value(o.value) FROM cell_obs o JOIN cells hc ON hc.cell_id = o.cell_id
             WHERE o."column" = 'cell_ontology_class' AND hc.cell_type = t.predicted_label) AS predicted_class,
           (SELECT o.value FROM cell_obs o WHERE o.cell_id = t.cell_id AND o."column" = 'cell_ontology_class') AS true_class
    FROM label_transfers t, latest WHERE t.transfer_id = latest.id
)
SELECT count(*) AS cells,
       round(avg((predicted_class = true_class)::INT), 3) AS accuracy,
       round(avg(confidence), 3) AS mean_confidence,
       sum((predicted_label = 'unknown')::INT) AS unknown
FROM predicted;
