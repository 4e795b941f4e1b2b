"""The real `blocks/latest` answer the simulator serves, embedded as data.

It is tests/fixtures/cosmos/tendermint_blocks_latest_astria_metro.json, embedded so an
installed package can serve it (tests check it still equals the capture);
`chainsim_lcd.blocks_latest_body` fills in the height, time and hashes.
"""

from __future__ import annotations

from typing import Any

#: The real `blocks/latest` capture
#: (tests/fixtures/cosmos/tendermint_blocks_latest_astria_metro.json),
#: embedded so an installed package can serve it; tests check it still equals the capture.
BLOCK_TEMPLATE: dict[str, Any] = {
    "block_id": {
        "hash": "sSpfoa73oXQddYdskOz6VGG3a6hZ+MAYTMaiY41HfnQ=",
        "part_set_header": {"total": 1, "hash": "fl7xAVccz+b6dKwdPBIZHDSl4KN9l1jLIgb7hO0eMr0="},
    },
    "block": {
        "header": {
            "version": {"block": "11", "app": "0"},
            "chain_id": "test",
            "height": "1535",
            "time": "2023-04-27T14:35:01.432976256Z",
            "last_block_id": {
                "hash": "e8+lA66E21id0jLCSZKZbqlLR2USn0L09Nx2WoeloJ8=",
                "part_set_header": {
                    "total": 1,
                    "hash": "GHuPppYO548tjTD/o6y7Nm5IR/YT3MyTcjL+PRTaAg8=",
                },
            },
            "last_commit_hash": "it3AwnT9mT/3pnajQ3x1v1k5EkHeihs1GCDvsYW5hj0=",
            "data_hash": "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
            "validators_hash": "U5hzFMsNK9ozjoCD5LKFVux3k4GiW5tmhKPoLCWx9oM=",
            "next_validators_hash": "U5hzFMsNK9ozjoCD5LKFVux3k4GiW5tmhKPoLCWx9oM=",
            "consensus_hash": "BICRvH3cKD93v7+R1zxE2ljD34qcvIZ0Bdi389qtoi8=",
            "app_hash": "Pq8dy53jfnFnFaPleK3o++k3ajMNpusN9bZn/Wc5oxY=",
            "last_results_hash": "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
            "evidence_hash": "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
            "proposer_address": "INaK2jlx5kaWGmLEq5dHYK4y6RI=",
        },
        "data": {
            "txs": [],
            "blobs": [],
            "square_size": "0",
            "hash": "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
        },
        "evidence": {"evidence": []},
        "last_commit": {
            "height": "1534",
            "round": 0,
            "block_id": {
                "hash": "e8+lA66E21id0jLCSZKZbqlLR2USn0L09Nx2WoeloJ8=",
                "part_set_header": {
                    "total": 1,
                    "hash": "GHuPppYO548tjTD/o6y7Nm5IR/YT3MyTcjL+PRTaAg8=",
                },
            },
            "signatures": [
                {
                    "block_id_flag": "BLOCK_ID_FLAG_COMMIT",
                    "validator_address": "INaK2jlx5kaWGmLEq5dHYK4y6RI=",
                    "timestamp": "2023-04-27T14:35:01.432976256Z",
                    "signature": (
                        "JBh/5ocUKFhje5E+ynersX5WYCOO4E8fTqH2LWrSCcqUgcZmk"
                        "QOBFe1zmYjaoiYN7B3SiErurBmfy5S1VHuVDA=="
                    ),
                }
            ],
        },
    },
    "sdk_block": {
        "header": {
            "version": {"block": "11", "app": "0"},
            "chain_id": "test",
            "height": "1535",
            "time": "2023-04-27T14:35:01.432976256Z",
            "last_block_id": {
                "hash": "e8+lA66E21id0jLCSZKZbqlLR2USn0L09Nx2WoeloJ8=",
                "part_set_header": {
                    "total": 1,
                    "hash": "GHuPppYO548tjTD/o6y7Nm5IR/YT3MyTcjL+PRTaAg8=",
                },
            },
            "last_commit_hash": "it3AwnT9mT/3pnajQ3x1v1k5EkHeihs1GCDvsYW5hj0=",
            "data_hash": "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
            "validators_hash": "U5hzFMsNK9ozjoCD5LKFVux3k4GiW5tmhKPoLCWx9oM=",
            "next_validators_hash": "U5hzFMsNK9ozjoCD5LKFVux3k4GiW5tmhKPoLCWx9oM=",
            "consensus_hash": "BICRvH3cKD93v7+R1zxE2ljD34qcvIZ0Bdi389qtoi8=",
            "app_hash": "Pq8dy53jfnFnFaPleK3o++k3ajMNpusN9bZn/Wc5oxY=",
            "last_results_hash": "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
            "evidence_hash": "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
            "proposer_address": "metrovaloper1yrtg4k3ew8nyd9s6vtz2h968vzhr96gjad4ws4",
        },
        "data": {
            "txs": [],
            "blobs": [],
            "square_size": "0",
            "hash": "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
        },
        "last_commit": {
            "height": "1534",
            "round": 0,
            "block_id": {
                "hash": "e8+lA66E21id0jLCSZKZbqlLR2USn0L09Nx2WoeloJ8=",
                "part_set_header": {
                    "total": 1,
                    "hash": "GHuPppYO548tjTD/o6y7Nm5IR/YT3MyTcjL+PRTaAg8=",
                },
            },
            "signatures": [
                {
                    "block_id_flag": "BLOCK_ID_FLAG_COMMIT",
                    "validator_address": "INaK2jlx5kaWGmLEq5dHYK4y6RI=",
                    "timestamp": "2023-04-27T14:35:01.432976256Z",
                    "signature": (
                        "JBh/5ocUKFhje5E+ynersX5WYCOO4E8fTqH2LWrSCcqUgcZmk"
                        "QOBFe1zmYjaoiYN7B3SiErurBmfy5S1VHuVDA=="
                    ),
                }
            ],
        },
    },
}
