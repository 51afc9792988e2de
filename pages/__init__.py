"""The dashboard's pages: one file each, listed here once for the navigation and the Home page."""

# (file, title, icon, what it does). Every job a page uses is one call into core/.
PAGES = [
    ("pages/home.py", "Home", ":material/home:", "What deepLanguage does."),
    ("pages/data.py", "Data", ":material/library_music:",
     "Load Common Voice or folders of clips; statistics, waveforms, full-band and low-pass log-mels."),
    ("pages/identify.py", "Identify", ":material/record_voice_over:",
     "Upload or record a clip and see the probability of every language."),
    ("pages/train.py", "Train", ":material/model_training:",
     "Launch, watch, stop and resume training runs; compare them; see hyperparameter searches."),
    ("pages/convergence.py", "Convergence", ":material/show_chart:",
     "Pretrain on a (low-pass) language, then time convergence on the target, across seeds."),
    ("pages/latent_space.py", "Latent space", ":material/scatter_plot:",
     "TSNE, UMAP and PCA of latents by language; hear any point; linear probes with CIs."),
]
