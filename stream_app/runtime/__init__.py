"""Everything pinned to faust-streaming, mode and aiokafka internals."""
