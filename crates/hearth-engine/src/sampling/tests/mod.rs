//! Unit and property tests of the sampling module.

mod detokenize;
mod filters;
mod params;
mod sampler;
mod stop;
mod top_list;
