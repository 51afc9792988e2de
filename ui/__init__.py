"""The dashboard: its pages in ui/pages/ (one file each, run by app.py's navigation), what they share here.

    common          the dataset picker, the clip viewer, dataset text, and the app's caches
    study           the study picker (remembered in the URL) and the new-study form
    identify_*      the Identify page's three tabs (a clip, how far to trust the model, teaching it)

May import core and streamlit; core never imports this. PAGES lists the pages once, for app.py's navigation
and the Home page.

The pages are not in a folder named pages/ beside app.py: Streamlit runs such a folder as a legacy multipage app
(its navigation listing every file) on a server's first visit, until app.py's st.navigation takes over.
"""

# (file, title, icon, what it does). Every job a page uses is one call into core/.
PAGES = [
    ("ui/pages/home.py", "Home", ":material/home:", "What deepLanguage does."),
    ("ui/pages/data.py", "Data", ":material/library_music:",
     "Load Common Voice or folders of clips; statistics, waveforms, full-band and low-pass log-mels."),
    ("ui/pages/identify.py", "Identify", ":material/record_voice_over:",
     "Upload, record or try a sample clip and see the probability of every language."),
    ("ui/pages/train.py", "Train", ":material/model_training:",
     "Launch a training run, watch it live, stop and resume it."),
    ("ui/pages/runs.py", "Runs", ":material/leaderboard:",
     "Every training run in one table, their curves compared, and the hyperparameter searches."),
    ("ui/pages/convergence.py", "Convergence", ":material/show_chart:",
     "Pretrain on a (low-pass) language, then time convergence on the target, across seeds."),
    ("ui/pages/latent_space.py", "Latent space", ":material/scatter_plot:",
     "TSNE, UMAP and PCA of latents by language; hear any point; linear probes with CIs."),
]
