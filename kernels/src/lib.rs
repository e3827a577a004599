//! GPU payloads: CUDA C kernels compiled with NVRTC at run time, and the nvCOMP binding.
//! Not yet written; see DESIGN.md §2 "kernels".
