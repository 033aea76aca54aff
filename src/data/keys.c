/* Configuration keys owned by the data module (see include/metaprompt/data.h). */
#include "core/internal.h"

const mp__key_info mp__keys_data[] = {
    {MP_CFG_DATA_SCALE, "data.scale", MP_CFG_TYPE_INT, 1, 0, 1},
    {MP_CFG_DATA_CSV_HEADER, "data.csv_header", MP_CFG_TYPE_INT, 0, 0, 1},
    {MP_CFG_DATA_CSV_LABEL_COLUMN, "data.csv_label_column", MP_CFG_TYPE_INT, -1, -1, 1000000},
    {MP_CFG_DATA_CSV_REGRESSION, "data.csv_regression", MP_CFG_TYPE_INT, 0, 0, 1},
    {MP_CFG_DATA_WAYS, "data.ways", MP_CFG_TYPE_INT, 5, 1, 100000},
    {MP_CFG_DATA_SHOTS, "data.shots", MP_CFG_TYPE_INT, 1, 1, 100000},
    {MP_CFG_DATA_QUERIES, "data.queries", MP_CFG_TYPE_INT, 15, 1, 100000},
    {MP_CFG_DATA_ROTATIONS, "data.rotations", MP_CFG_TYPE_INT, 0, 0, 1},
    {0, NULL, 0, 0, 0, 0},
};
