DROP TABLE consentgate_nodes;
