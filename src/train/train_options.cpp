#include "train/train_options.h"

#include "util/format.h"

namespace syncbn::train {

namespace po = boost::program_options;

po::options_description train_options(TrainConfig& c, int& threads, std::string& config_file,
                                      std::string& synthetic_shape, std::string& seed,
                                      bool& no_decay_norm_and_bias, bool& no_progress) {
  po::options_description options("syncbn-train options");
  // clang-format off
  options.add_options()
    ("help,h", "show this help and exit")
    ("config", po::value(&config_file), "read options from FILE (key = value lines); the command line wins")
    ("model", po::value(&c.model)->default_value(c.model), "mlp | cnn | resnet")
    ("norm", po::value(&c.norm)->default_value(c.norm), "none | bn | syncbn | gn | ln | in")
    ("sync-group-size", po::value(&c.sync_group_size)->default_value(c.sync_group_size), "syncbn: synchronise over groups of K consecutive ranks (0 = all ranks)")
    ("dataset", po::value(&c.dataset)->default_value(c.dataset), "fashion-mnist | synthetic")
    ("data-dir", po::value(&c.data_dir)->default_value(c.data_dir), "directory with the Fashion-MNIST IDX files (.gz or raw)")
    ("synthetic-samples", po::value(&c.synthetic_samples)->default_value(c.synthetic_samples), "synthetic: training samples (test: a fifth)")
    ("synthetic-classes", po::value(&c.synthetic_classes)->default_value(c.synthetic_classes), "synthetic: number of classes")
    ("synthetic-shape", po::value(&synthetic_shape)->default_value(synthetic_shape), "synthetic: sample shape C,H,W")
    ("epochs", po::value(&c.epochs)->default_value(c.epochs), "number of epochs")
    ("steps", po::value(&c.steps)->default_value(c.steps), "cap on optimizer steps (0 = none)")
    ("batch-size", po::value(&c.batch_size)->default_value(c.batch_size), "batch size PER RANK")
    ("lr", po::value(&c.lr)->default_value(c.lr, shortest_repr(c.lr)), "learning rate (the base rate with --scale-lr)")
    ("scale-lr", po::bool_switch(&c.scale_lr), "linear scaling rule: lr = lr * global_batch / 256")
    ("momentum", po::value(&c.momentum)->default_value(c.momentum, shortest_repr(c.momentum)), "SGD momentum")
    ("nesterov", po::bool_switch(&c.nesterov), "Nesterov momentum")
    ("weight-decay", po::value(&c.weight_decay)->default_value(c.weight_decay, shortest_repr(c.weight_decay)), "L2 weight decay")
    ("no-decay-norm-bias", po::bool_switch(&no_decay_norm_and_bias), "no weight decay on norm parameters and biases")
    ("schedule", po::value(&c.schedule)->default_value(c.schedule), "constant | step | cosine")
    ("warmup-epochs", po::value(&c.warmup_epochs)->default_value(c.warmup_epochs, shortest_repr(c.warmup_epochs)), "linear warmup length in epochs")
    ("init", po::value(&c.init)->default_value(c.init), "kaiming | xavier | small | large | zeros | constant:V (every Linear/Conv weight V; biases 0, norm weights 1)")
    ("norm-placement", po::value(&c.norm_placement)->default_value(c.norm_placement), "before-act (Linear/Conv -> Norm -> ReLU) | after-act (Linear/Conv -> ReLU -> Norm); mlp and cnn")
    ("dropout", po::value(&c.dropout)->default_value(c.dropout, shortest_repr(c.dropout)), "Dropout probability in each hidden block (0 = none); mlp and cnn")
    ("dropout-placement", po::value(&c.dropout_placement)->default_value(c.dropout_placement), "after-act (after the ReLU, feeding the next layer) | before-norm (feeding the norm)")
    ("on-divergence", po::value(&c.on_divergence)->default_value(c.on_divergence), "non-finite loss: stop (error, non-zero exit) | record (end all ranks at that step, write diverged_at_step to --metrics, exit 0, no --save)")
    ("health", po::value(&c.health)->implicit_value(0)->default_value(c.health), "health report on rank 0 (per-layer weight and gradient norms, BN running statistics, dead ReLUs; flags values outside the usual ranges): every K steps, or without K at each epoch's last step; -1 = off")
    ("seed", po::value(&seed)->default_value(seed), "seed of the data order, the initialisation and the synthetic data")
    ("threads", po::value(&threads)->default_value(0), "CPU threads per rank (0 = cores / ranks on this node)")
    ("eval-batch-size", po::value(&c.eval_batch_size)->default_value(c.eval_batch_size), "batch size of evaluation")
    ("broadcast-buffers", po::bool_switch(&c.broadcast_buffers), "broadcast BN buffers from rank 0 each step (local BN)")
    ("bucket-kib", po::value(&c.bucket_kib)->default_value(c.bucket_kib), "gradient bucket size in KiB (the first bucket is 1 MiB)")
    ("device", po::value(&c.device)->default_value(c.device), "auto | cpu | cuda (auto: cuda when a GPU is visible)")
    ("init-from", po::value(&c.init_from), "start from the weights and buffers in PATH (safetensors with state_dict names, e.g. from PyTorch; strict names and shapes)")
    ("save", po::value(&c.save), "write the final model (parameters and buffers) as safetensors to PATH")
    ("metrics", po::value(&c.metrics), "append one JSON line per epoch to PATH")
    ("checkpoint-dir", po::value(&c.checkpoint_dir), "write resumable checkpoints (model, optimizer, data position) to DIR at each epoch's end and the run's end")
    ("checkpoint-every", po::value(&c.checkpoint_every)->default_value(c.checkpoint_every), "also every N optimizer steps (0 = epoch ends only)")
    ("keep-checkpoints", po::value(&c.keep_checkpoints)->default_value(c.keep_checkpoints), "keep the K newest checkpoints in --checkpoint-dir")
    ("resume", po::value(&c.resume)->implicit_value(""), "continue from checkpoint FILE, or the newest valid one in DIR (--resume alone: --checkpoint-dir)")
    ("no-progress", po::bool_switch(&no_progress), "no progress bar")
    ("timeline", po::value(&c.timeline), "write a Chrome trace (open in ui.perfetto.dev) of every rank's steps to PATH")
    ("timeline-start", po::value(&c.timeline_start)->default_value(c.timeline_start), "--timeline: steps to skip before tracing (warm-up)")
    ("timeline-steps", po::value(&c.timeline_steps)->default_value(c.timeline_steps), "--timeline: number of steps to trace")
    ("no-timing", po::bool_switch()->notifier([&c](bool off) { c.timing = !off; }), "do not measure where the time goes (no time, bytes, collectives in --metrics)");
  // clang-format on
  return options;
}

void store_config_file(std::istream& in, const po::options_description& options,
                       po::variables_map& vm) {
  po::store(po::parse_config_file(in, options), vm);
}

}  // namespace syncbn::train
